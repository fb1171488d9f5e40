# Source on a GPU device machine from the folder holding .whl/ (the carried wheels: the
# project's own wheel plus its dependencies, built and downloaded off the device).
# NVLink multicast stays off in every process we start (NCCL, PyTorch, NVSHMEM).
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl || return 1
export PYTHONPATH=/tmp/site PYTHONUNBUFFERED=1
export NCCL_NVLS_ENABLE=0 TORCH_SYMM_MEM_DISABLE_MULTICAST=1 NVSHMEM_DISABLE_NVLS=1
export SPEEDRUN_HOME=${SPEEDRUN_HOME:-/tmp/speedrun}
# Host memory: each rank's torch.compile starts one worker per CPU (~300 MB anonymous
# memory each), so the 8 GiB CPU-track default trips on a 32-core GPU host before step 0.
export SPEEDRUN_SCORER__MEMORY_BYTES=${SPEEDRUN_SCORER__MEMORY_BYTES:-68719476736}
export SPEEDRUN_SANDBOX__MEMORY_BYTES=${SPEEDRUN_SANDBOX__MEMORY_BYTES:-68719476736}
