# Runs `promtool check metrics` on each fixture in FIXTURES ('|'-separated).
# promtool exits 0 when the text parses and passes its lints, 3 when it
# parses but a naming lint complains, and 1 when it does not parse. Only
# the parse matters here: the fixtures copy the provider's real names.
string(REPLACE "|" ";" fixtures "${FIXTURES}")
foreach(fixture IN LISTS fixtures)
  execute_process(
    COMMAND ${PROMTOOL} check metrics
    INPUT_FILE ${fixture}
    RESULT_VARIABLE rc
    OUTPUT_VARIABLE out
    ERROR_VARIABLE out)
  if(NOT (rc EQUAL 0 OR rc EQUAL 3) OR out MATCHES "parsing error")
    message(FATAL_ERROR
      "promtool rejected ${fixture} (exit ${rc}):\n${out}")
  endif()
  message(STATUS "promtool accepts ${fixture} (exit ${rc}) ${out}")
endforeach()
