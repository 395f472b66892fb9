# Shared compile settings: warnings as errors for our own code, optional sanitizers.
add_library(nvdp_warnings INTERFACE)
target_compile_options(nvdp_warnings INTERFACE
  -Wall -Wextra -Wpedantic -Werror -Wshadow -Wnon-virtual-dtor
  -Wold-style-cast -Wcast-align -Woverloaded-virtual
  -Wimplicit-fallthrough
  # GCC 12's libstdc++ trips -Wrestrict inside std::string at -O3 (GCC bug 105329).
  $<$<CXX_COMPILER_ID:GNU>:-Wno-restrict>)

if(NVDP_SANITIZE)
  message(STATUS "Sanitizers: ${NVDP_SANITIZE}")
  add_compile_options(-fsanitize=${NVDP_SANITIZE} -fno-omit-frame-pointer -fno-sanitize-recover=all)
  add_link_options(-fsanitize=${NVDP_SANITIZE})
endif()

# Release: drop unreferenced functions and data from the binaries.
add_compile_options($<$<CONFIG:Release>:-ffunction-sections> $<$<CONFIG:Release>:-fdata-sections>)
add_link_options($<$<CONFIG:Release>:LINKER:--gc-sections>)

find_program(CCACHE_PROGRAM ccache)
if(CCACHE_PROGRAM)
  set(CMAKE_CXX_COMPILER_LAUNCHER ${CCACHE_PROGRAM})
  set(CMAKE_C_COMPILER_LAUNCHER ${CCACHE_PROGRAM})
endif()

# nvdp_library(NAME SOURCES... DEPS ...): one static library per part under src/.
function(nvdp_library name)
  cmake_parse_arguments(ARG "" "" "SOURCES;DEPS" ${ARGN})
  add_library(${name} STATIC ${ARG_SOURCES})
  target_include_directories(${name} PUBLIC ${PROJECT_SOURCE_DIR}/src)
  target_link_libraries(${name} PUBLIC ${ARG_DEPS} PRIVATE nvdp_warnings)
endfunction()

# Where tests find the build and source trees (tests/nvml/fake_nvml_env.h reads these, and lets
# NVDP_BIN_DIR / NVDP_SOURCE_DIR in the environment override them).
function(nvdp_test_paths target)
  target_compile_definitions(${target} PRIVATE
    NVDP_TEST_BIN_DIR="${CMAKE_BINARY_DIR}/bin" NVDP_TEST_SOURCE_DIR="${PROJECT_SOURCE_DIR}")
endfunction()

# nvdp_test(NAME SOURCES... DEPS ... LABELS ...): a GoogleTest binary registered with CTest.
function(nvdp_test name)
  cmake_parse_arguments(ARG "" "" "SOURCES;DEPS;LABELS" ${ARGN})
  add_executable(${name} ${ARG_SOURCES})
  target_link_libraries(${name} PRIVATE ${ARG_DEPS} GTest::gmock_main nvdp_warnings)
  target_include_directories(${name} PRIVATE ${PROJECT_SOURCE_DIR}/tests ${PROJECT_SOURCE_DIR}/src)
  nvdp_test_paths(${name})
  gtest_discover_tests(${name} TEST_PREFIX "${name}." DISCOVERY_TIMEOUT 60 PROPERTIES LABELS "${ARG_LABELS}")
endfunction()
