# Environment every test and example sees, so a test can find the build tree and the crew CLI
# without guessing paths. Call after cli/ has been added.
function(crew_test_environment out_var)
  set(env "CREW_BINARY_DIR=${PROJECT_BINARY_DIR}")
  if(TARGET crew_cli)
    list(APPEND env "CREW_CLI=$<TARGET_FILE:crew_cli>")
  endif()
  set(${out_var} "${env}" PARENT_SCOPE)
endfunction()
