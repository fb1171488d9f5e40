# The tiny track's Python environment: the base Debian root plus the exact packages
# (torch included) of the environment that builds it, copied in rather than downloaded
# again. Built by `speedrun images build speedrun-tiny-cpu`; tagged by a hash of its inputs.
ARG BASE=speedrun/debian:bookworm
FROM ${BASE}
COPY site-packages/ /usr/local/lib/python3.11/dist-packages/
