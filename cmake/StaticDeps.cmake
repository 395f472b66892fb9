# NVDP_STATIC_DEPS: link the third-party libraries statically into the binaries, for the container
# image (deployments/container); libstdc++ and libgcc too (-static-libstdc++ -static-libgcc).
# glibc stays dynamic: the plugin dlopen()s libnvidia-ml.so.1 at run time, which a fully static
# glibc binary cannot do reliably (and -static measured slower to start). docs/performance.md
# ("Builds") has the measurements behind these choices.
#
# Debian ships the packages' CMake configs pointing at the shared objects; next to each
# /usr/lib/x86_64-linux-gnu/libX.so there is a libX.a (gRPC, protobuf, abseil, c-ares, re2, upb,
# yaml-cpp, OpenSSL, zlib). nvdp_static_deps_rewrite() points every imported target of this
# directory at the archive instead, and rewrites link items such as `-lre2` or `.../libre2.so`.
# spdlog and fmt have no archive in Debian 12 (libspdlog-dev and libfmt-dev ship only .so), so
# nvdp_static_spdlog() defines spdlog::spdlog as the header-only library on header-only fmt.

# Prints the archive next to a shared object or -l item into `out` (empty when there is none).
function(nvdp_static_archive_for item out)
  set(result "")
  if(item MATCHES "^-l([A-Za-z0-9_+.-]+)$")
    set(name "${CMAKE_MATCH_1}")
    foreach(dir ${CMAKE_C_IMPLICIT_LINK_DIRECTORIES} /usr/lib/${CMAKE_LIBRARY_ARCHITECTURE})
      if(EXISTS "${dir}/lib${name}.a")
        set(result "${dir}/lib${name}.a")
        break()
      endif()
    endforeach()
  elseif(item MATCHES "^(/.*/lib[A-Za-z0-9_+.-]+)\\.so(\\.[0-9]+)*$")
    # libgrpc++.so.1.51.1 -> libgrpc++.a (the base name ends before ".so").
    string(REGEX REPLACE "\\.so(\\.[0-9]+)*$" ".a" archive "${item}")
    if(EXISTS "${archive}")
      set(result "${archive}")
    endif()
  endif()
  set(${out} "${result}" PARENT_SCOPE)
endfunction()

# Rewrites the imported library targets of the current directory to their static archives.
# Targets without an archive stay dynamic, with a message naming them.
function(nvdp_static_deps_rewrite)
  get_directory_property(targets IMPORTED_TARGETS)
  set(kept_dynamic "")
  foreach(target ${targets})
    get_target_property(type ${target} TYPE)
    if(NOT type MATCHES "^(SHARED_LIBRARY|UNKNOWN_LIBRARY|STATIC_LIBRARY|INTERFACE_LIBRARY)$")
      continue()
    endif()
    if(NOT type STREQUAL "INTERFACE_LIBRARY")
      get_target_property(configs ${target} IMPORTED_CONFIGURATIONS)
      set(props IMPORTED_LOCATION)
      if(configs)
        foreach(config ${configs})
          list(APPEND props IMPORTED_LOCATION_${config})
        endforeach()
      endif()
      foreach(prop ${props})
        get_target_property(location ${target} ${prop})
        if(NOT location)
          continue()
        endif()
        nvdp_static_archive_for("${location}" archive)
        if(archive)
          set_target_properties(${target} PROPERTIES ${prop} "${archive}")
        elseif(location MATCHES "\\.so")
          list(APPEND kept_dynamic "${target}")
        endif()
      endforeach()
      if(type STREQUAL "SHARED_LIBRARY")
        # Linked by full path, not as -l<name> through the soname.
        set_target_properties(${target} PROPERTIES IMPORTED_NO_SONAME FALSE)
      endif()
    endif()
    get_target_property(links ${target} INTERFACE_LINK_LIBRARIES)
    if(links)
      set(rewritten "")
      foreach(item ${links})
        nvdp_static_archive_for("${item}" archive)
        if(archive)
          list(APPEND rewritten "${archive}")
        else()
          list(APPEND rewritten "${item}")
        endif()
      endforeach()
      set_target_properties(${target} PROPERTIES INTERFACE_LINK_LIBRARIES "${rewritten}")
    endif()
  endforeach()
  # The binaries speak gRPC only over unix sockets with insecure credentials, which gRPC's
  # "unsecure" build (no TLS/ALTS credentials, no OpenSSL) serves as well; it cuts ~6 MiB of the
  # plugin. gRPC::grpc++ is pointed at libgrpc++_unsecure.a and libgrpc_unsecure.a, which leaves
  # OpenSSL out of the link.
  if(NVDP_GRPC_UNSECURE AND TARGET gRPC::grpc++ AND TARGET gRPC::grpc++_unsecure)
    foreach(prop IMPORTED_LOCATION IMPORTED_LOCATION_NONE IMPORTED_LOCATION_RELEASE)
      get_target_property(location gRPC::grpc++_unsecure ${prop})
      if(location)
        set_target_properties(gRPC::grpc++ PROPERTIES ${prop} "${location}")
      endif()
    endforeach()
    get_target_property(links gRPC::grpc++_unsecure INTERFACE_LINK_LIBRARIES)
    set_target_properties(gRPC::grpc++ PROPERTIES INTERFACE_LINK_LIBRARIES "${links}")
    message(STATUS "NVDP_STATIC_DEPS: gRPC::grpc++ is gRPC's unsecure build (no OpenSSL)")
  endif()
  # libprotobuf.a uses zlib (gzip streams); the shared library carried that dependency itself.
  if(TARGET protobuf::libprotobuf AND TARGET ZLIB::ZLIB)
    set_property(TARGET protobuf::libprotobuf APPEND PROPERTY
      INTERFACE_LINK_LIBRARIES ZLIB::ZLIB Threads::Threads)
  endif()
  if(kept_dynamic)
    list(REMOVE_DUPLICATES kept_dynamic)
    message(STATUS "NVDP_STATIC_DEPS: no static archive, kept dynamic: ${kept_dynamic}")
  endif()
endfunction()

# spdlog::spdlog as header-only spdlog on header-only fmt (Debian has no libspdlog.a/libfmt.a).
# Call instead of find_package(spdlog).
macro(nvdp_static_spdlog)
  find_package(fmt CONFIG REQUIRED)
  add_library(spdlog::spdlog INTERFACE IMPORTED)
  set_target_properties(spdlog::spdlog PROPERTIES
    INTERFACE_COMPILE_DEFINITIONS SPDLOG_FMT_EXTERNAL
    INTERFACE_LINK_LIBRARIES "fmt::fmt-header-only;Threads::Threads")
endmacro()

# Link flags of the static build. Every configuration: libstdc++ and libgcc linked in (the image
# then holds only glibc; the NVIDIA driver libraries injected at run time need nothing else).
# Release, in addition to -ffunction-sections -fdata-sections -Wl,--gc-sections
# (cmake/ProjectOptions.cmake): optimized hash tables, only needed libraries, packed relative
# relocations (DT_RELR, glibc >= 2.36: smaller and faster to relocate, PIE/ASLR kept), full RELRO,
# stripped binaries.
function(nvdp_static_link_options)
  add_link_options(-static-libstdc++ -static-libgcc)
  set(release_flags -O1 --as-needed -z,pack-relative-relocs -z,now -z,relro --strip-all)
  foreach(flag ${release_flags})
    add_link_options($<$<CONFIG:Release>:LINKER:${flag}>)
  endforeach()
endfunction()
