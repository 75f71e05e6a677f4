// Text from agents, peers and providers on its way to an operator's
// terminal. A provider's /ready reasons or metric labels, a doctor's
// output or a plan's message can hold escape sequences (ESC, CSI, OSC 52
// "set the clipboard"); a table must show them, not run them.
// Thread-safe: free functions over values.
#ifndef KMSFLEET_CLI_TERMINAL_TEXT_H_
#define KMSFLEET_CLI_TERMINAL_TEXT_H_

#include <string>
#include <string_view>

namespace kmsfleet {

// `text` with every C0 control byte, DEL and C1 control (U+0080..U+009F
// in UTF-8) written as "\xNN", a tab as a space, and '\n' kept when
// `keep_newlines` (a whole rendering) or written "\n" (one line of a
// redrawn screen, which must stay one line). Idempotent.
std::string ForTerminal(std::string_view text, bool keep_newlines = true);

}  // namespace kmsfleet

#endif  // KMSFLEET_CLI_TERMINAL_TEXT_H_
