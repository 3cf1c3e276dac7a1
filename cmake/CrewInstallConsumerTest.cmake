# ctest script (cmake -P): install the build in CREW_BUILD_DIR into a scratch prefix, then
# configure, build and run tests/install_consumer against that prefix only.
foreach(var CREW_BUILD_DIR CREW_CONSUMER_SOURCE_DIR CREW_WORK_DIR CREW_CXX_COMPILER CREW_GENERATOR)
  if(NOT DEFINED ${var} OR "${${var}}" STREQUAL "")
    message(FATAL_ERROR "CrewInstallConsumerTest: ${var} is not set")
  endif()
endforeach()
if(NOT CREW_BUILD_TYPE)
  set(CREW_BUILD_TYPE Release)
endif()

set(prefix "${CREW_WORK_DIR}/prefix")
set(consumer_build "${CREW_WORK_DIR}/build")
file(REMOVE_RECURSE "${CREW_WORK_DIR}")
file(MAKE_DIRECTORY "${CREW_WORK_DIR}")

function(step)
  list(JOIN ARGN " " command_line)
  message(STATUS "install_consumer: ${command_line}")
  execute_process(COMMAND ${ARGN} COMMAND_ERROR_IS_FATAL ANY)
endfunction()

step("${CMAKE_COMMAND}" --install "${CREW_BUILD_DIR}" --prefix "${prefix}" --config "${CREW_BUILD_TYPE}")
step("${CMAKE_COMMAND}" -S "${CREW_CONSUMER_SOURCE_DIR}" -B "${consumer_build}"
     -G "${CREW_GENERATOR}"
     "-DCMAKE_BUILD_TYPE=${CREW_BUILD_TYPE}"
     "-DCMAKE_CXX_COMPILER=${CREW_CXX_COMPILER}"
     "-DCMAKE_PREFIX_PATH=${prefix}"
     # Only the scratch prefix may satisfy find_package(crew), never a crew installed on the system.
     "-DCMAKE_FIND_USE_PACKAGE_REGISTRY=OFF")
step("${CMAKE_COMMAND}" --build "${consumer_build}")
step("${consumer_build}/crew_install_consumer")
