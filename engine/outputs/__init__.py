"""The station's outputs to the line (no Qt): verdicts, state and counters for the PLC, the
PLC's trigger and product switch back. One ResultOutput interface (base.py); OPC UA
(opcua_server.py, asyncua) and Modbus TCP (modbus_server.py, pymodbus) implement it, on one
event loop thread of their own (aio.py) that the scoring and GUI threads never wait on;
LineOutputs (hub.py) is the one set per process. security.py makes the OPC UA certificate;
rest.py is the REST API for MES systems."""
from engine.outputs.base import ResultOutput
from engine.outputs.hub import LineOutputs, build_outputs
from engine.outputs.values import (LineProblem, LineResult, LineState, OutputsConfig,
                                   OutputView, is_local)

__all__ = ["ResultOutput", "LineOutputs", "build_outputs", "LineProblem", "LineResult",
           "LineState", "OutputsConfig", "OutputView", "is_local"]
