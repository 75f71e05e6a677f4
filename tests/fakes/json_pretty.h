// JSON text the way Go's json.MarshalIndent(v, "", "  ") writes it, which is
// what the real report commands print (reference §2.1): two-space indent,
// `"key": value`, empty containers as {} and [].
// Thread-safe: free function.
#ifndef KMSFLEET_TESTS_FAKES_JSON_PRETTY_H_
#define KMSFLEET_TESTS_FAKES_JSON_PRETTY_H_

#include <string>

#include <boost/json/value.hpp>

namespace kmsfleet::fake {

// Returns `value` indented, without a trailing newline.
std::string PrettyJson(const boost::json::value& value);

}  // namespace kmsfleet::fake

#endif  // KMSFLEET_TESTS_FAKES_JSON_PRETTY_H_
