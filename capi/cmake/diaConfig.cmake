# CMake package of libdia, installed by capi/install.sh as PREFIX/lib/cmake/dia/diaConfig.cmake:
#
#   find_package(dia CONFIG REQUIRED)          # CMAKE_PREFIX_PATH=PREFIX
#   target_link_libraries(app PRIVATE dia::dia)
#
# dia::dia is the shared library; dia::dia_static the static one (with the system libraries
# Rust's standard library needs). ONNX Runtime is loaded at run time (see dia.h), not linked.

get_filename_component(_dia_prefix "${CMAKE_CURRENT_LIST_DIR}/../../.." ABSOLUTE)

find_library(DIA_LIBRARY NAMES dia PATHS "${_dia_prefix}/lib" NO_DEFAULT_PATH)
find_library(DIA_STATIC_LIBRARY NAMES libdia.a PATHS "${_dia_prefix}/lib" NO_DEFAULT_PATH)
find_path(DIA_INCLUDE_DIR dia.h PATHS "${_dia_prefix}/include" NO_DEFAULT_PATH)

if(NOT DIA_LIBRARY OR NOT DIA_INCLUDE_DIR)
  set(dia_FOUND FALSE)
  set(dia_NOT_FOUND_MESSAGE "libdia or dia.h not found under ${_dia_prefix} (run capi/install.sh PREFIX)")
  return()
endif()

file(STRINGS "${DIA_INCLUDE_DIR}/dia.h" _dia_version_line REGEX "^#define DIA_VERSION_STRING ")
string(REGEX REPLACE "^#define DIA_VERSION_STRING \"([^\"]*)\".*" "\\1" dia_VERSION "${_dia_version_line}")

if(NOT TARGET dia::dia)
  add_library(dia::dia SHARED IMPORTED)
  set_target_properties(dia::dia PROPERTIES
    IMPORTED_LOCATION "${DIA_LIBRARY}"
    INTERFACE_INCLUDE_DIRECTORIES "${DIA_INCLUDE_DIR}")
endif()
if(DIA_STATIC_LIBRARY AND NOT TARGET dia::dia_static)
  add_library(dia::dia_static STATIC IMPORTED)
  set(_dia_system_libs Threads::Threads m)
  if(CMAKE_SYSTEM_NAME STREQUAL "Linux")
    list(APPEND _dia_system_libs dl gcc_s)
  endif()
  find_package(Threads REQUIRED)
  set_target_properties(dia::dia_static PROPERTIES
    IMPORTED_LOCATION "${DIA_STATIC_LIBRARY}"
    INTERFACE_INCLUDE_DIRECTORIES "${DIA_INCLUDE_DIR}"
    INTERFACE_LINK_LIBRARIES "${_dia_system_libs}")
endif()
set(dia_FOUND TRUE)
