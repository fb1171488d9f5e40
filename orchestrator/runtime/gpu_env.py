"""Environment variables every process we start carries on a GPU host."""

# NVLink multicast can take a shared host's GPUs out of service for a long time: it stays
# off in NCCL, PyTorch and NVSHMEM, whatever the record or submission asks for.
MULTICAST_OFF_ENV = {
    "NCCL_NVLS_ENABLE": "0",
    "TORCH_SYMM_MEM_DISABLE_MULTICAST": "1",
    "NVSHMEM_DISABLE_NVLS": "1",
}
