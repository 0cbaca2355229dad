# ctest layer_check: the layer checker (check_layers.cmake) passes the real tree and fails a copy
# with planted violations, naming each one. Run as
#   cmake -DROOT=<source tree> -DWORK=<scratch dir> -P test_check_layers.cmake
cmake_minimum_required(VERSION 3.20)
set(checker ${CMAKE_CURRENT_LIST_DIR}/check_layers.cmake)

function(run_checker root out_rc out_text)
  execute_process(COMMAND ${CMAKE_COMMAND} -DROOT=${root} -P ${checker}
    RESULT_VARIABLE rc OUTPUT_VARIABLE o ERROR_VARIABLE e)
  set(${out_rc} ${rc} PARENT_SCOPE)
  set(${out_text} "${o}${e}" PARENT_SCOPE)
endfunction()

# 1. the real tree keeps the rule
run_checker(${ROOT} rc text)
if(NOT rc EQUAL 0)
  message(FATAL_ERROR "the source tree breaks the layer rule:\n${text}")
endif()

# 2. a copy of the layers with one planted violation of each kind fails, naming each
file(REMOVE_RECURSE ${WORK})
file(MAKE_DIRECTORY ${WORK})
file(COPY ${ROOT}/src/base ${ROOT}/src/core ${ROOT}/src/stun ${ROOT}/src/rendezvous
     ${ROOT}/src/driver DESTINATION ${WORK}/src)
file(COPY ${ROOT}/include DESTINATION ${WORK})
run_checker(${WORK} rc text)
if(NOT rc EQUAL 0)
  message(FATAL_ERROR "the unchanged copy fails the check:\n${text}")
endif()
file(APPEND ${WORK}/src/stun/nat.c "#include \"tern/tern.h\"\n")           # a layer it may not use
file(APPEND ${WORK}/src/rendezvous/relay.c "#include \"core/conn.h\"\n")   # core's internals
file(APPEND ${WORK}/src/base/map.c "#include \"tern/driver.h\"\n")         # base uses nothing
file(APPEND ${WORK}/include/tern/stun.h "#include \"tern/udp.h\"\n")       # a public header too
run_checker(${WORK} rc text)
if(rc EQUAL 0)
  message(FATAL_ERROR "planted violations passed the check:\n${text}")
endif()
foreach(want
    "layer violation: src/stun/nat.c includes tern/tern.h (stun may use: base)"
    "layer violation: src/rendezvous/relay.c includes core/conn.h (private to core"
    "layer violation: src/base/map.c includes tern/driver.h (base may use: nothing)"
    "layer violation: include/tern/stun.h includes tern/udp.h (stun may use: base)")
  string(FIND "${text}" "${want}" at)
  if(at LESS 0)
    message(FATAL_ERROR "missing \"${want}\" in:\n${text}")
  endif()
endforeach()
string(REGEX MATCHALL "layer violation:" all "${text}")
list(LENGTH all n)
if(NOT n EQUAL 4)
  message(FATAL_ERROR "expected 4 violations, got ${n}:\n${text}")
endif()
file(REMOVE_RECURSE ${WORK})
message(STATUS "layer check: the tree passes, 4 planted violations fail")
