// Early-return helpers for absl::Status, since Debian 12's Abseil predates
// ABSL_RETURN_IF_ERROR and ABSL_ASSIGN_OR_RETURN.
#ifndef KMSFLEET_CORE_STATUS_MACROS_H_
#define KMSFLEET_CORE_STATUS_MACROS_H_

#include "absl/status/status.h"
#include "absl/status/statusor.h"

#define KMSFLEET_RETURN_IF_ERROR(expr)             \
  do {                                             \
    if (absl::Status kmsfleet_status_ = (expr);    \
        !kmsfleet_status_.ok()) {                  \
      return kmsfleet_status_;                     \
    }                                              \
  } while (0)

#define KMSFLEET_CONCAT_INNER_(a, b) a##b
#define KMSFLEET_CONCAT_(a, b) KMSFLEET_CONCAT_INNER_(a, b)

// KMSFLEET_ASSIGN_OR_RETURN(auto x, F()) declares x from F()'s value or
// returns F()'s status.
#define KMSFLEET_ASSIGN_OR_RETURN(lhs, expr)                               \
  KMSFLEET_ASSIGN_OR_RETURN_IMPL_(                                         \
      KMSFLEET_CONCAT_(kmsfleet_statusor_, __LINE__), lhs, expr)
#define KMSFLEET_ASSIGN_OR_RETURN_IMPL_(tmp, lhs, expr) \
  auto tmp = (expr);                                    \
  if (!tmp.ok()) return tmp.status();                   \
  lhs = std::move(*tmp)

#endif  // KMSFLEET_CORE_STATUS_MACROS_H_
