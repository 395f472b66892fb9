// gpu-probe: a tiny CUDA client for scripts/gpu-check.sh. Run it with or without MPS limits in
// its environment; it reports, as key=value lines:
//   device_name=..., sm_count=<multiProcessorCount as this client sees it>
//   blocks=<launched>, distinct_sms=<how many different SMs its blocks ran on>
//   alloc_<N>_mib=ok|fail (<error>)   for each --alloc-mib N (device memory via cudaMalloc)
//   env_active_thread_percentage=..., env_pinned_mem_limit=..., env_visible_devices=...
// Exit status: 0 when the GPU could be used at all, 2 otherwise (error=... says why).
//
//   nvcc -O2 -arch=native -o gpu-probe scripts/gpu-probe.cu
//   ./gpu-probe --alloc-mib 1024 --alloc-mib 3072
#include <cuda_runtime.h>

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <set>
#include <vector>

namespace {

__global__ void RecordSmid(unsigned* smids, long long spin_cycles) {
  if (threadIdx.x == 0) {
    unsigned smid;
    asm volatile("mov.u32 %0, %%smid;" : "=r"(smid));
    smids[blockIdx.x] = smid;
  }
  // Keep the block resident for a while so that the blocks spread over every SM the client may use.
  const long long start = clock64();
  while (clock64() - start < spin_cycles) {
  }
}

const char* EnvOr(const char* name, const char* fallback) {
  const char* value = std::getenv(name);
  return value != nullptr ? value : fallback;
}

int Fail(const char* what, cudaError_t err) {
  std::printf("error=%s: %s (%s)\n", what, cudaGetErrorString(err), cudaGetErrorName(err));
  return 2;
}

}  // namespace

int main(int argc, char** argv) {
  std::vector<long> alloc_mib;
  int blocks = 4096;
  for (int i = 1; i < argc; ++i) {
    if (std::strcmp(argv[i], "--alloc-mib") == 0 && i + 1 < argc) {
      alloc_mib.push_back(std::atol(argv[++i]));
    } else if (std::strcmp(argv[i], "--blocks") == 0 && i + 1 < argc) {
      blocks = std::atoi(argv[++i]);
    } else {
      std::fprintf(stderr, "usage: %s [--alloc-mib N]... [--blocks N]\n", argv[0]);
      return 64;
    }
  }
  std::printf("env_active_thread_percentage=%s\n",
              EnvOr("CUDA_MPS_ACTIVE_THREAD_PERCENTAGE", "(unset)"));
  std::printf("env_pinned_mem_limit=%s\n", EnvOr("CUDA_MPS_PINNED_DEVICE_MEM_LIMIT", "(unset)"));
  std::printf("env_visible_devices=%s\n", EnvOr("CUDA_VISIBLE_DEVICES", "(unset)"));
  std::printf("env_pipe_directory=%s\n", EnvOr("CUDA_MPS_PIPE_DIRECTORY", "(unset)"));

  cudaError_t err = cudaSetDevice(0);
  if (err != cudaSuccess) return Fail("cudaSetDevice(0)", err);
  err = cudaFree(nullptr);  // create the context (through the MPS server when one runs)
  if (err != cudaSuccess) return Fail("context creation", err);
  cudaDeviceProp prop;
  err = cudaGetDeviceProperties(&prop, 0);
  if (err != cudaSuccess) return Fail("cudaGetDeviceProperties", err);
  std::printf("device_name=%s\n", prop.name);
  std::printf("sm_count=%d\n", prop.multiProcessorCount);

  unsigned* smids = nullptr;
  err = cudaMalloc(&smids, sizeof(unsigned) * static_cast<size_t>(blocks));
  if (err != cudaSuccess) return Fail("cudaMalloc(smids)", err);
  cudaMemset(smids, 0xff, sizeof(unsigned) * static_cast<size_t>(blocks));
  // About 100 microseconds per block at typical clocks.
  RecordSmid<<<blocks, 128>>>(smids, 150000);
  err = cudaDeviceSynchronize();
  if (err != cudaSuccess) return Fail("kernel", err);
  std::vector<unsigned> host(static_cast<size_t>(blocks));
  err = cudaMemcpy(host.data(), smids, sizeof(unsigned) * host.size(), cudaMemcpyDeviceToHost);
  if (err != cudaSuccess) return Fail("cudaMemcpy", err);
  cudaFree(smids);
  std::set<unsigned> distinct;
  for (unsigned smid : host) {
    if (smid != 0xffffffffu) distinct.insert(smid);
  }
  std::printf("blocks=%d\n", blocks);
  std::printf("distinct_sms=%zu\n", distinct.size());

  for (long mib : alloc_mib) {
    void* p = nullptr;
    err = cudaMalloc(&p, static_cast<size_t>(mib) << 20);
    if (err == cudaSuccess) {
      // Touch it, so that a lazily enforced limit would show too.
      cudaError_t touch = cudaMemset(p, 0, static_cast<size_t>(mib) << 20);
      if (touch == cudaSuccess) touch = cudaDeviceSynchronize();
      if (touch == cudaSuccess) {
        std::printf("alloc_%ld_mib=ok\n", mib);
      } else {
        std::printf("alloc_%ld_mib=fail (memset: %s)\n", mib, cudaGetErrorName(touch));
      }
      cudaFree(p);
    } else {
      std::printf("alloc_%ld_mib=fail (%s)\n", mib, cudaGetErrorName(err));
      cudaGetLastError();  // allocation errors are not sticky; clear it anyway
    }
  }
  return 0;
}
