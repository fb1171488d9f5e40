"""Run a training script as ``__main__`` (argv: the script, then its arguments); when it
returns, end the process without finalizing Python.

For the tests' multi-rank CPU runs (torchrun over gloo). torch 2.15's gloo worker threads
drop the tensors of the last collectives a moment after the collective completes, and that
needs the GIL; when the rank's main thread has already begun finalizing Python, the worker
cannot have it and the rank aborts ("terminate called without an active exception", after
every line was printed: read from a core dump; pytorch/pytorch#190489). The scripts cannot
avoid it within the speedrun's rules (no os._exit, no sleep), and no CPU track runs more
than one rank (their manifests' nproc), so only these tests step around it. A script that raises
still ends as it would have, with its traceback and a non-zero exit.
"""

import os
import runpy
import sys

script, *arguments = sys.argv[1:]
sys.argv = [script, *arguments]
runpy.run_path(script, run_name="__main__")
sys.stdout.flush()
sys.stderr.flush()
os._exit(0)
