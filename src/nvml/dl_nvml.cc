// Implemented by the nvml part owner.
