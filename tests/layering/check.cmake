# Compiles SOURCE with only the include path and definitions of LAYER's
# library and expects EXPECT (compiles | layer-error). A layering mistake
# must fail to compile with the layer header's own message, not any error.
#   cmake -DCXX=... -DINCLUDE=... -DDEFINES=... -DSOURCE=... -DEXPECT=... -P check.cmake
string(REPLACE "|" ";" defines "${DEFINES}")
set(flags "")
foreach(d IN LISTS defines)
  if(d)
    list(APPEND flags "-D${d}")
  endif()
endforeach()
execute_process(
  COMMAND ${CXX} -std=c++20 -fsyntax-only -I${INCLUDE} -I${PROTO_GEN} ${flags} ${SOURCE}
  RESULT_VARIABLE rc OUTPUT_VARIABLE out ERROR_VARIABLE err)
if(EXPECT STREQUAL "compiles")
  if(NOT rc EQUAL 0)
    message(FATAL_ERROR "${SOURCE} should compile:\n${err}")
  endif()
else()
  if(rc EQUAL 0)
    message(FATAL_ERROR "${SOURCE} compiled, but it crosses a layer")
  endif()
  if(NOT err MATCHES "was included (outside|below) the")
    message(FATAL_ERROR "${SOURCE} failed for another reason:\n${err}")
  endif()
endif()
message(STATUS "${SOURCE}: ${EXPECT} as expected")
