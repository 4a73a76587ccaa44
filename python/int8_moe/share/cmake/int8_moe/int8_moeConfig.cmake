# CMake package for LibTorch programs: after find_package(Torch), find_package(int8_moe)
# gives the imported target int8_moe::ops (the op library + the int8_moe/ops.h header).
# CMAKE_PREFIX_PATH: `python -m int8_moe cmake-prefix-path` (as torch.utils.cmake_prefix_path).
get_filename_component(_INT8_MOE_PKG "${CMAKE_CURRENT_LIST_DIR}/../../.." ABSOLUTE)
file(GLOB _INT8_MOE_LIB "${_INT8_MOE_PKG}/_C*.so")
if(NOT _INT8_MOE_LIB)
  set(int8_moe_FOUND FALSE)
  set(int8_moe_NOT_FOUND_MESSAGE
      "no op library (_C*.so) in ${_INT8_MOE_PKG}: build int8-moe first")
  return()
endif()
list(GET _INT8_MOE_LIB 0 _INT8_MOE_LIB)
if(NOT TARGET int8_moe::ops)
  add_library(int8_moe::ops SHARED IMPORTED)
  set_target_properties(int8_moe::ops PROPERTIES
    IMPORTED_LOCATION "${_INT8_MOE_LIB}"
    INTERFACE_INCLUDE_DIRECTORIES "${_INT8_MOE_PKG}/include"
    # Nothing in a consumer references the library's symbols (calls go through the
    # dispatcher), so keep the linker from dropping it: loading it registers the ops.
    INTERFACE_LINK_OPTIONS "LINKER:--no-as-needed")
  if(TARGET torch)
    set_property(TARGET int8_moe::ops APPEND PROPERTY INTERFACE_LINK_LIBRARIES torch)
  endif()
endif()
set(int8_moe_LIBRARY "${_INT8_MOE_LIB}")
set(int8_moe_FOUND TRUE)
