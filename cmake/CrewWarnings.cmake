# Warnings for crew's own targets only; third-party headers come in as SYSTEM includes through
# their imported targets, so they stay quiet.
function(crew_set_warnings target)
  target_compile_options(${target} PRIVATE -Wall -Wextra -Wpedantic)
  if(NOT CREW_SANITIZER STREQUAL "none")
    # GCC 12 reports std::optional members of defaulted option structs as maybe-uninitialized
    # under -fsanitize at -O1 (GCC bug 105562 and kin); the release build keeps the warning.
    target_compile_options(${target} PRIVATE -Wno-maybe-uninitialized)
  endif()
  if(CREW_WERROR)
    target_compile_options(${target} PRIVATE -Werror)
  endif()
endfunction()
