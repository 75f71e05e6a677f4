// Must NOT compile: the node layer knows no peer (architecture.md §3).
#include "kmsfleet/cluster/state_file.h"
