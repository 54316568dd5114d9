"""The dm_env_rpc protocol and its client side: specs ↔ spaces, launchers (Docker, local binary,
address), client streams, world events, gRPC's transport choice. The 3D envs
(:mod:`alchemy_gym.envs.rpc`) are built on it; our own server (:mod:`alchemy_gym.server`) speaks it.

Modules (imported on demand; they need the ``rpc`` extra: dm-env-rpc, grpcio, docker, shimmy):

* :mod:`~alchemy_gym.rpc.spaces` — dm_env_rpc ``TensorSpec`` → Gymnasium spaces, action packing and checks.
* :mod:`~alchemy_gym.rpc.launchers` — one server per env: Docker container, local process, or an address.
* :mod:`~alchemy_gym.rpc.connection` — dm_env_rpc client streams (blocking; asyncio for the envs), no thread left.
* :mod:`~alchemy_gym.rpc.events` — ``WorldEvent`` messages built in code; decoding of the ``events`` observation.
* :mod:`~alchemy_gym.rpc.names` — the observation, action and event names and encodings (no extra needed),
  shared by our server and the clients.
* :mod:`~alchemy_gym.rpc.tuning` — gRPC's faster loopback transport for a process (servers choose it).
"""

#: The Unity image of dm_alchemy v1.0.0 (interface spec §1).
DEFAULT_IMAGE = "gcr.io/deepmind-environments/alchemy:v1.0.0"
#: The gRPC port inside the container (``_DOCKER_INTERNAL_GRPC_PORT``).
CONTAINER_PORT = 10000

__all__ = ["CONTAINER_PORT", "DEFAULT_IMAGE"]
