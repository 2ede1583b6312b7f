"""The camera output line (GenICam LineSelector/LineSource/UserOutputValue) driven by the
verdict, against node maps built here from GenApi XML (the real genicam library); the
virtual camera, which has no output lines, and a non-GenICam source get one sentence."""
import time

import numpy as np
import pytest
from genicam import genapi

from engine.camera.genicam import VIKY_CTI
from engine.camera.nodes import CameraNodes
from engine.errors import InspectError
from engine.line.trigger import TriggerGate
from engine.line.values import LiveResult
from engine.outputs import LineOutputs, OutputsConfig
from engine.outputs.camera_line import CameraLineOutput, nodes_of_feed
from engine.types import Decision, Frame, Verdict

ENUM = """<Enumeration Name="{name}" NameSpace="Standard">{entries}<Value>0</Value></Enumeration>"""


def node_map(with_outputs: bool = True):
    def enum(name, *entries):
        return ENUM.format(name=name, entries="".join(
            f'<EnumEntry Name="{e}"><Value>{i}</Value></EnumEntry>' for i, e in enumerate(entries)))
    body = enum("ExposureAuto", "Off", "Continuous")
    if with_outputs:
        body += (enum("LineSelector", "Line0", "Line1", "Line2") + enum("LineMode", "Input", "Output")
                 + enum("LineSource", "Off", "ExposureActive", "UserOutput0", "UserOutput1")
                 + enum("UserOutputSelector", "UserOutput0", "UserOutput1")
                 + '<Boolean Name="UserOutputValue" NameSpace="Standard"><pValue>UOV</pValue></Boolean>'
                 + '<Integer Name="UOV"><Value>0</Value><Min>0</Min><Max>1</Max></Integer>')
    xml = f"""<?xml version="1.0" encoding="utf-8"?>
<RegisterDescription ModelName="TestCam" VendorName="Test" StandardNameSpace="None"
  SchemaMajorVersion="1" SchemaMinorVersion="1" SchemaSubMinorVersion="0" MajorVersion="1"
  MinorVersion="0" SubMinorVersion="0" ProductGuid="11111111-1111-1111-1111-111111111111"
  VersionGuid="22222222-2222-2222-2222-222222222222"
  xmlns="http://www.genicam.org/GenApi/Version_1_1">
  <Category Name="Root" NameSpace="Standard"><pFeature>ExposureAuto</pFeature></Category>
  {body}
</RegisterDescription>"""
    nm = genapi.NodeMap()
    nm.load_xml_from_string(xml)
    return nm


def live(i: int, decision: Decision) -> LiveResult:
    f = Frame(i, time.monotonic(), time.time(), "cam", np.zeros((2, 2, 3), np.uint8), part_id=f"p{i}")
    v = Verdict(i, 0.9 if decision == Decision.FAIL else 0.1, decision, 0.5, part_id=f"p{i}")
    return LiveResult(f, v, f.rgb, "widget", 0.0, i + 1, 0, 0, True)


def wait_for(cond, timeout_s, what):
    deadline = time.monotonic() + timeout_s
    while not cond():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.005)


def test_a_fail_raises_the_camera_line_for_the_pulse_and_a_pass_leaves_it_low():
    nm = node_map()
    nodes = CameraNodes(nm, "TestCam")
    cfg = OutputsConfig(opcua=False, modbus=False, result_valid_ms=150)
    out = CameraLineOutput(lambda: nodes, "Line1", "UserOutput1")
    hub = LineOutputs(cfg, TriggerGate("st1"), [out])
    hub.start()
    try:
        assert hub.wait_open(10) and out.running and out.error == ""
        assert (nm.get_node("LineSelector").value, nm.get_node("LineMode").value,
                nm.get_node("LineSource").value) == ("Line1", "Output", "UserOutput1")
        value = lambda: nm.get_node("UserOutputValue").value   # noqa: E731
        hub.on_live(live(0, Decision.PASS))
        wait_for(lambda: hub.last is not None, 5, "the first result")
        time.sleep(0.05)
        assert value() is False
        t0 = time.monotonic()
        hub.on_live(live(1, Decision.FAIL))
        wait_for(value, 5, "the line high on FAIL")
        wait_for(lambda: not value(), 5, "the line low after the pulse")
        assert time.monotonic() - t0 >= 0.15 - 0.02
        assert nm.get_node("UserOutputSelector").value == "UserOutput1"
        # the node is written on a worker thread; the view is updated when that write returns
        wait_for(lambda: dict(out.view().values).get("level") == "low", 5, "the view saying low")
        assert hub.counts() == {}
    finally:
        hub.stop()


def test_a_camera_without_output_lines_is_one_sentence():
    nodes = CameraNodes(node_map(with_outputs=False), "TestCam")
    hub = LineOutputs(OutputsConfig(opcua=False, modbus=False), TriggerGate("st1"),
                      [CameraLineOutput(lambda: nodes)])
    hub.start()
    try:
        assert hub.wait_open(10)
        v = hub.views()[0]
        assert not v.running and v.error.startswith(
            "Camera TestCam has no output line to drive (GenICam node(s) LineSelector, "
            "LineSource, UserOutputSelector, UserOutputValue not found)")
    finally:
        hub.stop()


class FeedOf:
    def __init__(self, source):
        self.acquisition = type("A", (), {"source": source})()


@pytest.mark.skipif(not VIKY_CTI.exists(), reason="genicam wheel without viky.cti")
def test_the_virtual_camera_has_no_output_line_and_says_so():
    from engine.camera.spec import make_source
    src = make_source("genicam:0?width=160&height=120")
    src.open()
    try:
        with pytest.raises(InspectError, match="has no output line to drive"):
            CameraLineOutput(nodes_of_feed(FeedOf(src)))._setup()
    finally:
        src.close()


def test_a_source_that_is_not_genicam_is_named():
    from engine.camera.spec import make_source
    with pytest.raises(InspectError, match="needs a GenICam camera; the source now is 'sim'"):
        nodes_of_feed(FeedOf(make_source("sim")))()
