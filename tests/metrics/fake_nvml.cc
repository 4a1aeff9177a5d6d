// A stand-in for libnvidia-ml.so with one GPU at 37 % load, 71 °C and a hardware thermal slowdown,
// so that the collector's dlopen path is exercised on machines without an NVIDIA driver.
extern "C" {
struct FakeUtilization {
  unsigned int gpu;
  unsigned int memory;
};
static int fake_device = 0;
int nvmlInit_v2() { return 0; }
int nvmlShutdown() { return 0; }
int nvmlDeviceGetCount_v2(unsigned int* n) {
  *n = 1;
  return 0;
}
int nvmlDeviceGetHandleByIndex_v2(unsigned int i, void** d) {
  if (i != 0) return 2;  // NVML_ERROR_INVALID_ARGUMENT
  *d = &fake_device;
  return 0;
}
int nvmlDeviceGetUtilizationRates(void* d, FakeUtilization* u) {
  if (d != &fake_device) return 2;
  u->gpu = 37;
  u->memory = 12;
  return 0;
}
int nvmlDeviceGetTemperature(void* d, int sensor, unsigned int* t) {
  if (d != &fake_device || sensor != 0) return 2;
  *t = 71;
  return 0;
}
int nvmlDeviceGetCurrentClocksThrottleReasons(void* d, unsigned long long* reasons) {
  if (d != &fake_device) return 2;
  *reasons = 0x40ULL;  // HW thermal slowdown
  return 0;
}
}
