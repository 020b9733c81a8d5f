# The module table: which llamarl modules each top-level folder may include and link. It is written
# down once, as the DEPS of each folder's llamarl_module() (or llamarl_layer()) call; linking follows
# it, and the CTest check layers/includes (scripts/check_layers.sh) fails on any #include of a module
# that the including folder does not declare. docs/ARCHITECTURE.md explains the table.

# llamarl_layer(FOLDER [DEP...]): records FOLDER's row of the module table.
function(llamarl_layer folder)
  set_property(GLOBAL APPEND PROPERTY LLAMARL_LAYERS ${folder})
  set_property(GLOBAL PROPERTY LLAMARL_LAYER_DEPS_${folder} ${ARGN})
endfunction()

# llamarl_module(NAME [LIBTORCH_FREE] SOURCES ... DEPS ... PUBLIC_LIBS ...)
# Declares the library llamarl_NAME of one top-level folder and its row of the module table. DEPS are
# the llamarl modules it may use (linked publicly). LIBTORCH_FREE links each dependency's
# LibTorch-free part (llamarl_<dep>_base) instead, for modules that never touch a tensor.
function(llamarl_module name)
  cmake_parse_arguments(ARG "LIBTORCH_FREE" "" "SOURCES;DEPS;PUBLIC_LIBS" ${ARGN})
  add_library(llamarl_${name} STATIC ${ARG_SOURCES})
  target_include_directories(llamarl_${name} PUBLIC ${PROJECT_SOURCE_DIR})
  target_compile_options(llamarl_${name} PRIVATE ${LLAMARL_WARNINGS})
  foreach(dep IN LISTS ARG_DEPS)
    if(ARG_LIBTORCH_FREE)
      target_link_libraries(llamarl_${name} PUBLIC llamarl_${dep}_base)
    else()
      target_link_libraries(llamarl_${name} PUBLIC llamarl_${dep})
    endif()
  endforeach()
  if(ARG_PUBLIC_LIBS)
    target_link_libraries(llamarl_${name} PUBLIC ${ARG_PUBLIC_LIBS})
  endif()
  llamarl_layer(${name} ${ARG_DEPS})
endfunction()

# llamarl_write_layers(PATH): writes the module table for scripts/check_layers.sh, one line per
# folder: "folder dep dep ...". Rewritten only when it changes.
function(llamarl_write_layers path)
  get_property(layers GLOBAL PROPERTY LLAMARL_LAYERS)
  set(text "# folder: the llamarl modules it may include (generated from the DEPS in CMake)\n")
  foreach(layer IN LISTS layers)
    get_property(deps GLOBAL PROPERTY LLAMARL_LAYER_DEPS_${layer})
    string(REPLACE ";" " " deps "${deps}")
    string(APPEND text "${layer} ${deps}\n")
  endforeach()
  file(CONFIGURE OUTPUT ${path} CONTENT "${text}" @ONLY)
endfunction()
