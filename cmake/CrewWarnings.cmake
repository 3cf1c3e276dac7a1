# Warnings for crew's own targets only; third-party headers come in as SYSTEM includes through
# their imported targets, so they stay quiet.
function(crew_set_warnings target)
  target_compile_options(${target} PRIVATE -Wall -Wextra -Wpedantic)
  if(CREW_WERROR)
    target_compile_options(${target} PRIVATE -Werror)
  endif()
endfunction()
