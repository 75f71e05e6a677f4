#include "json_pretty.h"

#include <boost/json.hpp>

namespace kmsfleet::fake {
namespace {

void Write(const boost::json::value& value, int depth, std::string& out) {
  const std::string indent(2 * (depth + 1), ' ');
  const std::string closing(2 * depth, ' ');
  if (const auto* object = value.if_object(); object && !object->empty()) {
    out += "{\n";
    bool first = true;
    for (const auto& [key, item] : *object) {
      out += first ? "" : ",\n";
      first = false;
      out += indent + boost::json::serialize(boost::json::string(key)) + ": ";
      Write(item, depth + 1, out);
    }
    out += "\n" + closing + "}";
  } else if (const auto* array = value.if_array(); array && !array->empty()) {
    out += "[\n";
    for (size_t i = 0; i < array->size(); ++i) {
      out += i == 0 ? "" : ",\n";
      out += indent;
      Write((*array)[i], depth + 1, out);
    }
    out += "\n" + closing + "]";
  } else {
    out += boost::json::serialize(value);  // scalars and empty containers
  }
}

}  // namespace

std::string PrettyJson(const boost::json::value& value) {
  std::string out;
  Write(value, 0, out);
  return out;
}

}  // namespace kmsfleet::fake
