# CREW_SANITIZER applies one sanitizer to every target in the tree (library, tests, CLI, examples),
# because a sanitizer runtime must see all the code that shares memory with the code it checks.
set(CREW_SANITIZER "none" CACHE STRING "Sanitizer for every target: none, asan-ubsan or tsan")
set_property(CACHE CREW_SANITIZER PROPERTY STRINGS none asan-ubsan tsan)

if(CREW_SANITIZER STREQUAL "none")
  set(_crew_sanitizer_flags "")
elseif(CREW_SANITIZER STREQUAL "asan-ubsan")
  set(_crew_sanitizer_flags
      -fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=undefined)
elseif(CREW_SANITIZER STREQUAL "tsan")
  set(_crew_sanitizer_flags -fsanitize=thread -fno-omit-frame-pointer)
else()
  message(FATAL_ERROR "CREW_SANITIZER must be none, asan-ubsan or tsan, not '${CREW_SANITIZER}'")
endif()

if(_crew_sanitizer_flags)
  add_compile_options(${_crew_sanitizer_flags})
  add_link_options(${_crew_sanitizer_flags})
  message(STATUS "crew: sanitizer ${CREW_SANITIZER}: ${_crew_sanitizer_flags}")
endif()
