// Reading kmsfleetctl's JSON output in multi-process tests (an operation,
// a plan): tolerant accessors, so a test fails on its expectation rather
// than on a parse exception.
#ifndef KMSFLEET_TESTS_INTEGRATION_OPERATION_JSON_H_
#define KMSFLEET_TESTS_INTEGRATION_OPERATION_JSON_H_

#include <string>

#include <boost/json.hpp>

namespace kmsfleet::testing {

// The object `text` holds; empty when it is not one.
inline boost::json::object Json(const std::string& text) {
  boost::system::error_code ec;
  boost::json::value v = boost::json::parse(text, ec);
  return !ec && v.is_object() ? v.as_object() : boost::json::object();
}

// A string field; "" when absent or not a string.
inline std::string Str(const boost::json::object& o, const char* key) {
  const boost::json::value* v = o.if_contains(key);
  return v != nullptr && v->is_string() ? std::string(v->as_string()) : "";
}

// An operation's `done`.
inline bool Done(const boost::json::object& o) {
  const boost::json::value* v = o.if_contains("done");
  return v != nullptr && v->is_bool() && v->as_bool();
}

}  // namespace kmsfleet::testing

#endif  // KMSFLEET_TESTS_INTEGRATION_OPERATION_JSON_H_
