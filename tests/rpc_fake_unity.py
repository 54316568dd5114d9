"""A tiny dm_env_rpc server with the Unity server's *specs* (interface spec §3–4), for client tests.

It is not Alchemy: it records the actions it receives (``FakeUnity.received``), keeps them sticky,
raises ``Score`` by the current ``HAND_GRIP`` each step, sends one ``TrialStarted`` event on
the first step and ends episodes after ``episode_length`` steps.
"""

from __future__ import annotations

import threading
from concurrent import futures

import grpc
import numpy as np
from dm_env_rpc.v1 import dm_env_rpc_pb2 as pb
from dm_env_rpc.v1 import dm_env_rpc_pb2_grpc, tensor_spec_utils, tensor_utils

from alchemy_gym.rpc.events import make_event

UNITY_ACTIONS = {
    "MOVE_BACK_FORWARD": (-1.0, 1.0),
    "STRAFE_LEFT_RIGHT": (-1.0, 1.0),
    "LOOK_DOWN_UP": (-1.0, 1.0),
    "LOOK_LEFT_RIGHT": (-1.0, 1.0),
    "HAND_ROTATE_AROUND_FORWARD": (-1.0, 1.0),
    "HAND_ROTATE_AROUND_RIGHT": (-1.0, 1.0),
    "HAND_ROTATE_AROUND_UP": (-1.0, 1.0),
    "HAND_PUSH_PULL": (-10.0, 10.0),
    "HAND_GRIP": (0.0, 1.0),
    "USE_HELD_OBJECT": (0.0, 1.0),
}


def unity_specs(width: int = 96, height: int = 72):
    specs = pb.ActionObservationSpecs()
    for uid, (name, (low, high)) in enumerate(UNITY_ACTIONS.items(), start=1):
        spec = specs.actions[uid]
        spec.name, spec.dtype = name, pb.DataType.DOUBLE
        tensor_spec_utils.set_bounds(spec, low, high)
    language = specs.actions[len(UNITY_ACTIONS) + 1]
    language.name, language.dtype = "LANGUAGE", pb.DataType.STRING
    obs = [
        ("RGB_INTERLEAVED", pb.DataType.UINT8, (height, width, 3)),
        ("ACCELERATION", pb.DataType.FLOAT, (3,)),
        ("HAND_FORCE", pb.DataType.FLOAT, ()),
        ("HAND_IS_HOLDING", pb.DataType.BOOL, ()),
        ("HAND_DISTANCE", pb.DataType.FLOAT, ()),
        ("Score", pb.DataType.DOUBLE, ()),
        ("events", pb.DataType.PROTO, (-1,)),
    ]
    for uid, (name, dtype, shape) in enumerate(obs, start=1):
        spec = specs.observations[uid]
        spec.name, spec.dtype = name, dtype
        spec.shape.extend(shape)
    return specs


class FakeUnity(dm_env_rpc_pb2_grpc.EnvironmentServicer):
    def __init__(self, episode_length: int = 10) -> None:
        self.episode_length = episode_length
        self.received: list[dict[str, float]] = []  # per step after the first: the keys sent
        self.world_settings: list[dict] = []
        self.lock = threading.Lock()

    def Process(self, request_iterator, context):  # noqa: N802
        specs = None
        sticky = {name: 0.0 for name in UNITY_ACTIONS}
        names = {uid: spec.name for uid, spec in unity_specs().actions.items()}
        steps, score = -1, 0.0
        for request in request_iterator:
            kind = request.WhichOneof("payload")
            response = pb.EnvironmentResponse()
            if kind == "create_world":
                with self.lock:
                    self.world_settings.append(
                        {k: tensor_utils.unpack_tensor(v) for k, v in request.create_world.settings.items()}
                    )
                response.create_world.world_name = "unity_world"
            elif kind == "join_world":
                s = request.join_world.settings
                width = int(tensor_utils.unpack_tensor(s["width"])) if "width" in s else 96
                height = int(tensor_utils.unpack_tensor(s["height"])) if "height" in s else 72
                specs = unity_specs(width, height)
                response.join_world.specs.CopyFrom(specs)
            elif kind == "reset" and specs is not None:
                steps = -1
                response.reset.specs.CopyFrom(specs)
            elif kind in ("step", "reset") and specs is None:
                response.error.code = 9
                response.error.message = "not joined to a world"
            elif kind == "step":
                events = []
                if steps < 0 or steps >= self.episode_length:
                    steps, score = 0, 0.0
                    events = [make_event("DeepMind/Trial/TrialStarted", {"trial_id": 0})]
                else:
                    sent = {names[uid]: float(tensor_utils.unpack_tensor(t)) for uid, t in request.step.actions.items()}
                    with self.lock:
                        self.received.append(sent)
                    sticky.update(sent)
                    steps += 1
                    score += sticky["HAND_GRIP"]
                values = {
                    "RGB_INTERLEAVED": np.full((specs.observations[1].shape), steps % 256, dtype=np.uint8),
                    "ACCELERATION": np.array([sticky["MOVE_BACK_FORWARD"], 0, 0], dtype=np.float32),
                    "HAND_FORCE": np.float32(sticky["HAND_GRIP"]),
                    "HAND_IS_HOLDING": np.bool_(sticky["HAND_GRIP"] > 0.5),
                    "HAND_DISTANCE": np.float32(0.0),
                    "Score": np.float64(score),
                }
                step = response.step
                for uid in request.step.requested_observations:
                    name = specs.observations[uid].name
                    if name == "events":
                        step.observations[uid].protos.array.extend(events)
                        step.observations[uid].shape.append(len(events))
                    else:
                        step.observations[uid].CopyFrom(tensor_utils.pack_tensor(values[name]))
                done = steps >= self.episode_length
                step.state = pb.EnvironmentStateType.TERMINATED if done else pb.EnvironmentStateType.RUNNING
            elif kind in ("leave_world", "destroy_world"):
                getattr(response, kind).SetInParent()
            else:
                response.error.code = 12
                response.error.message = f"{kind} not supported"
            yield response


def start_fake_unity(episode_length: int = 10):
    """``(server, servicer, "127.0.0.1:PORT")``."""
    servicer = FakeUnity(episode_length)
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
    dm_env_rpc_pb2_grpc.add_EnvironmentServicer_to_server(servicer, server)
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    return server, servicer, f"127.0.0.1:{port}"
