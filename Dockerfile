# bids-synth: CUDA runtime image.
#   docker build -t bids-synth:0.1.0 .
#   docker run --gpus all -v /data:/data:ro -v /out:/out bids-synth:0.1.0 /data /out participant
#
# Build arguments:
#   BASE_IMAGE   any Debian/Ubuntu image with apt (default: NVIDIA's CUDA runtime); a CPU-only
#                base works too (scripts/container-smoke.sh builds one with debootstrap)
#   TORCH_INDEX  wheel index of the torch build (default: CUDA 12.8; empty: the other pip sources)
#   PIP_INDEX_URL, PIP_EXTRA_INDEX_URL, PIP_FIND_LINKS, PIP_CERT
#                optional pip sources (and CA bundle) of the build stage only, e.g. local wheel
#                folders mounted with `podman build --volume /opt/wheels:/opt/wheels:ro`
ARG BASE_IMAGE=nvidia/cuda:12.8.1-cudnn-runtime-ubuntu24.04

# --- build stage: a virtual environment with the package, its pinned torch and the models -----
FROM ${BASE_IMAGE} AS builder
ARG TORCH_INDEX=https://download.pytorch.org/whl/cu128
ARG PIP_INDEX_URL
ARG PIP_EXTRA_INDEX_URL
ARG PIP_FIND_LINKS
ARG PIP_CERT
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1 DEBIAN_FRONTEND=noninteractive
RUN apt-get update \
 && apt-get install -y --no-install-recommends python3 python3-venv python3-dev build-essential \
 && rm -rf /var/lib/apt/lists/*
RUN python3 -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH
WORKDIR /src
COPY pyproject.toml README.md ./
COPY bids_synth ./bids_synth
RUN pip install ${TORCH_INDEX:+--extra-index-url "$TORCH_INDEX"} "torch==2.13.0" \
 && pip install . \
 && bids-synth models verify --all

# --- runtime stage: the same base and Python, the venv, a non-root user ------------------------
FROM ${BASE_IMAGE}
ARG VERSION=0.1.0
LABEL org.opencontainers.image.title="bids-synth" \
      org.opencontainers.image.description="BIDS App for medical image synthesis" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.source="https://github.com/bids-synth/bids-synth" \
      org.opencontainers.image.licenses="Apache-2.0"
ENV DEBIAN_FRONTEND=noninteractive
RUN apt-get update \
 && apt-get install -y --no-install-recommends python3 libgomp1 \
 && rm -rf /var/lib/apt/lists/* \
 && useradd --create-home --uid 1001 bidssynth
COPY --from=builder /opt/venv /opt/venv
# run presets (--config-file, --use-plugin) at a fixed place in the image
COPY workflows /opt/bids-synth/workflows
ENV PATH=/opt/venv/bin:$PATH \
    BIDS_SYNTH_CONTAINER=docker \
    BIDS_SYNTH_IMAGE_TAG=${VERSION} \
    NIPYPE_NO_ET=1 \
    HOME=/home/bidssynth
USER bidssynth
WORKDIR /home/bidssynth
ENTRYPOINT ["bids-synth"]
CMD ["--help"]
