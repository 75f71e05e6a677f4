// Must NOT compile: the core may not use an adapter (architecture.md §3).
#include "kmsfleet/node/log.h"
