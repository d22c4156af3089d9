# llamafuse's CUDA build: included by CMakeLists.txt only when LLAMAFUSE_CUDA=ON, so the CPU
# build never looks for a CUDA toolkit. Turns on the CUDA language, checks that the toolkit
# and cuBLAS (which ggml's CUDA backend links) are there, and defines
# llamafuse_cuda_kernels: a static library of native/kernels/cuda/*.cu that the addon links.

# Hopper by default (sm_90a: the architecture-specific target that allows wgmma/setmaxnreg);
# override with -DCMAKE_CUDA_ARCHITECTURES=... (LLAMAFUSE_CUDA_ARCHITECTURES for npm).
# Set before enable_language(CUDA), which would otherwise pick the compiler's default.
if (NOT DEFINED CMAKE_CUDA_ARCHITECTURES OR "${CMAKE_CUDA_ARCHITECTURES}" STREQUAL "")
    set(CMAKE_CUDA_ARCHITECTURES 90a)
endif()

include(CheckLanguage)
check_language(CUDA)
if (NOT CMAKE_CUDA_COMPILER)
    message(FATAL_ERROR
        "llamafuse: LLAMAFUSE_CUDA=ON but no CUDA compiler was found.\n"
        "  Install the CUDA toolkit (12.0 or newer for sm_90a) and put nvcc on PATH,\n"
        "  or point CUDACXX / CMAKE_CUDA_COMPILER at it; or build without LLAMAFUSE_CUDA.")
endif()
enable_language(CUDA)
set(CMAKE_CUDA_STANDARD 17)
set(CMAKE_CUDA_STANDARD_REQUIRED ON)

find_package(CUDAToolkit)
if (NOT CUDAToolkit_FOUND)
    message(FATAL_ERROR
        "llamafuse: LLAMAFUSE_CUDA=ON but the CUDA toolkit (headers and runtime libraries) was not found.\n"
        "  Set CUDAToolkit_ROOT to the toolkit's folder (the one holding bin/nvcc).")
endif()
# ggml-cuda links cuBLAS; a toolkit without it (a compiler-only install) fails much later
# with an obscure link error, so say it here.
find_path(LLAMAFUSE_CUBLAS_INCLUDE_DIR cublas_v2.h HINTS ${CUDAToolkit_INCLUDE_DIRS})
if (NOT TARGET CUDA::cublas OR NOT LLAMAFUSE_CUBLAS_INCLUDE_DIR)
    message(FATAL_ERROR
        "llamafuse: LLAMAFUSE_CUDA=ON but cuBLAS was not found in the CUDA toolkit at ${CUDAToolkit_LIBRARY_DIR}.\n"
        "  ggml's CUDA backend needs libcublas and cublas_v2.h: install the toolkit's cuBLAS\n"
        "  (e.g. the libcublas-dev-13-0 package), or pass CUDA_cublas_LIBRARY and add its include folder.")
endif()
message(STATUS "llamafuse: CUDA ${CUDAToolkit_VERSION}, architectures ${CMAKE_CUDA_ARCHITECTURES}")

file(GLOB LLAMAFUSE_CUDA_SOURCES CONFIGURE_DEPENDS "${CMAKE_CURRENT_SOURCE_DIR}/native/kernels/cuda/*.cu")
add_library(llamafuse_cuda_kernels STATIC ${LLAMAFUSE_CUDA_SOURCES})
set_target_properties(llamafuse_cuda_kernels PROPERTIES
    CUDA_ARCHITECTURES "${CMAKE_CUDA_ARCHITECTURES}"
    POSITION_INDEPENDENT_CODE ON
    CUDA_VISIBILITY_PRESET hidden
    CXX_VISIBILITY_PRESET hidden)
# The hook glue reads ggml tensors and calls the setter that 0002-cuda-fattn-hook.patch adds.
target_include_directories(llamafuse_cuda_kernels PRIVATE "${LLAMA_CPP_DIR}/ggml/include")
target_compile_options(llamafuse_cuda_kernels PRIVATE $<$<COMPILE_LANGUAGE:CUDA>:-O3>)
# ggml-cuda is defined later (add_subdirectory of llama.cpp); names resolve at generate time.
# The CUDA runtime comes with it, so our .cu objects and ggml's link the same one.
target_link_libraries(llamafuse_cuda_kernels PUBLIC ggml-cuda)
