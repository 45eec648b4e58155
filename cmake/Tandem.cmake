# Helpers every component uses, so that each CMakeLists.txt stays a few lines long.
#
#   tandem_library(core SOURCES a.cc b.cc DEPS absl::status)
#       A static library `tandem_core`, alias `tandem::core`, whose headers are included as
#       "core/a.h" (the include root is src/).
#   tandem_test(core_test SOURCES a_test.cc DEPS tandem::core [LABELS integration] [TIMEOUT s])
#       A GoogleTest binary registered with CTest (and part of the `all_tests` target). `make test`
#       runs tests labelled `unit` (the default) in the ASan+UBSan tree (target `unit_tests`) and
#       `integration` tests, which start processes, in the release tree (`integration_tests`).
#   tandem_fuzzer(http_request_fuzzer SOURCES f.cc DEPS tandem::net)
#       A libFuzzer binary, built only when TANDEM_FUZZ is on.

set(TANDEM_SRC_ROOT ${PROJECT_SOURCE_DIR}/src)
add_custom_target(unit_tests)
add_custom_target(integration_tests)
add_custom_target(all_tests)  # every test binary (no benchmarks)
add_custom_target(fuzzers)

function(tandem_library name)
  cmake_parse_arguments(ARG "" "" "SOURCES;DEPS" ${ARGN})
  if(ARG_SOURCES)
    add_library(tandem_${name} STATIC ${ARG_SOURCES})
    target_include_directories(tandem_${name} PUBLIC ${TANDEM_SRC_ROOT} ${PROJECT_BINARY_DIR}/generated)
    target_link_libraries(tandem_${name} PUBLIC ${ARG_DEPS})
  else()
    # A component whose code has not landed yet: a header-only target so dependents can link it.
    add_library(tandem_${name} INTERFACE)
    target_include_directories(tandem_${name} INTERFACE ${TANDEM_SRC_ROOT})
    target_link_libraries(tandem_${name} INTERFACE ${ARG_DEPS})
  endif()
  add_library(tandem::${name} ALIAS tandem_${name})
endfunction()

function(tandem_test name)
  cmake_parse_arguments(ARG "" "TIMEOUT" "SOURCES;DEPS;LABELS" ${ARGN})
  add_executable(${name} ${ARG_SOURCES})
  # Test drivers need no -O3: -O1 compiles them a third faster (the code under test keeps its
  # own flags in its library).
  if(CMAKE_BUILD_TYPE STREQUAL "Release")
    target_compile_options(${name} PRIVATE -O1)
  endif()
  target_link_libraries(${name} PRIVATE ${ARG_DEPS} GTest::gtest GTest::gmock GTest::gtest_main)
  if(NOT ARG_LABELS)
    set(ARG_LABELS unit)
  endif()
  if(NOT ARG_TIMEOUT)
    set(ARG_TIMEOUT 300)
  endif()
  add_test(NAME ${name} COMMAND ${name} --gtest_brief=1)
  # Scratch files (testing::TempDir()) stay in the build tree, one folder per test binary.
  set(scratch ${PROJECT_BINARY_DIR}/test-scratch/${name})
  file(MAKE_DIRECTORY ${scratch})
  set_tests_properties(${name} PROPERTIES LABELS "${ARG_LABELS}" TIMEOUT ${ARG_TIMEOUT}
    ENVIRONMENT "TANDEM_BINARY=$<TARGET_FILE:tandem>;TANDEM_SOURCE_DIR=${PROJECT_SOURCE_DIR};TEST_TMPDIR=${scratch}")
  if("unit" IN_LIST ARG_LABELS)
    add_dependencies(unit_tests ${name})
  endif()
  if("integration" IN_LIST ARG_LABELS)
    add_dependencies(integration_tests ${name})
  endif()
  add_dependencies(all_tests ${name})
endfunction()

function(tandem_fuzzer name)
  cmake_parse_arguments(ARG "" "" "SOURCES;DEPS" ${ARGN})
  if(NOT TANDEM_FUZZ)
    return()
  endif()
  add_executable(${name} ${ARG_SOURCES})
  target_link_libraries(${name} PRIVATE ${ARG_DEPS})
  target_link_options(${name} PRIVATE -fsanitize=fuzzer)
  add_dependencies(fuzzers ${name})
endfunction()

#   tandem_benchmark(http_bench SOURCES http_bench.cc DEPS tandem::net)
#       A Google Benchmark (or plain) benchmark binary under bench/<component>/, built by `make`
#       and run by `make bench` through bench/<component>/run.sh.
add_custom_target(benchmarks)
function(tandem_benchmark name)
  cmake_parse_arguments(ARG "" "" "SOURCES;DEPS" ${ARGN})
  add_executable(${name} ${ARG_SOURCES})
  target_link_libraries(${name} PRIVATE ${ARG_DEPS})
  add_dependencies(benchmarks ${name})
endfunction()
