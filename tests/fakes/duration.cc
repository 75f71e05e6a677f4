#include "duration.h"

#include <cctype>
#include <string>
#include <utility>

namespace kmsfleet::fake {
namespace {

std::optional<double> UnitNanos(std::string_view unit) {
  static const std::pair<std::string_view, double> kUnits[] = {
      {"ns", 1},       {"us", 1e3},  {"\xc2\xb5s", 1e3}, {"ms", 1e6},
      {"s", 1e9},      {"m", 60e9},  {"h", 3600e9}};
  for (const auto& [name, nanos] : kUnits) {
    if (unit == name) return nanos;
  }
  return std::nullopt;
}

}  // namespace

std::optional<std::chrono::nanoseconds> ParseGoDuration(std::string_view text) {
  if (text == "0") return std::chrono::nanoseconds(0);
  if (text.empty()) return std::nullopt;
  double total = 0;
  size_t i = 0;
  while (i < text.size()) {
    size_t start = i;
    while (i < text.size() && (std::isdigit(static_cast<unsigned char>(text[i])) ||
                               text[i] == '.')) {
      ++i;
    }
    if (i == start) return std::nullopt;
    double number = 0;
    try {
      number = std::stod(std::string(text.substr(start, i - start)));
    } catch (...) {
      return std::nullopt;
    }
    size_t unit_start = i;
    while (i < text.size() && !std::isdigit(static_cast<unsigned char>(text[i])) &&
           text[i] != '.') {
      ++i;
    }
    auto nanos = UnitNanos(text.substr(unit_start, i - unit_start));
    if (!nanos) return std::nullopt;
    total += number * *nanos;
  }
  return std::chrono::nanoseconds(static_cast<long long>(total));
}

}  // namespace kmsfleet::fake
