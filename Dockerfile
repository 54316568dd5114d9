# The dm_env_rpc server of symbolic Alchemy (alchemy_gym.server.service), run like the Unity image:
# gRPC on port 10000 inside the container.
#
# Build it with `alchemy-gym build-image` (no container registry needed: it builds the wheels on the host and a
# Debian base image with mmdebstrap when no Python base image is present), or by hand:
#
#   pip wheel --wheel-dir wheels . dm-env-rpc grpcio && docker build -t alchemy-gym-server .
#
# The entry point chooses gRPC's faster loopback transport (alchemy_gym/rpc/tuning.py) unless the
# container is given GRPC_EXPERIMENTS.
#
# Access: the server serves only clients that present its token when the container is given one:
# ALCHEMY_GYM_TOKEN=TOKEN, or a token file mounted read-only and named by ALCHEMY_GYM_TOKEN_FILE
# (e.g. -v $PWD/tokens:/run/secrets/alchemy-gym-tokens:ro -e ALCHEMY_GYM_TOKEN_FILE=/run/secrets/alchemy-gym-tokens).
# The label below tells alchemy-gym's Docker launcher that this image checks tokens, and in which
# variable it takes one: the launcher gives each container a fresh random token of its own.
#
# The build context must hold ./wheels with the alchemy-gym wheel and the wheels of its
# dependencies for the base image's Python: nothing is downloaded during the build.
ARG BASE_IMAGE=python:3.11-slim-bookworm
FROM ${BASE_IMAGE}

ENV PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    PIP_BREAK_SYSTEM_PACKAGES=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    HOME=/tmp

COPY wheels/ /tmp/wheels/
RUN python3 -m pip install --no-index --no-cache-dir --find-links /tmp/wheels alchemy-gym dm-env-rpc grpcio \
    && rm -rf /tmp/wheels \
    && python3 -c "import alchemy_gym.server.service"

LABEL alchemy-gym.token-env="ALCHEMY_GYM_TOKEN"

# an unprivileged user (numeric: minimal base images have no useradd)
USER 10001:10001
EXPOSE 10000
ENTRYPOINT ["python3", "-m", "alchemy_gym.server.service", "--host", "0.0.0.0", "--port", "10000"]
