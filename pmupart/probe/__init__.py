"""Conformance probes (DESIGN.md decision 10): a bare-metal AArch64 image built by our own
assembler, run on an emulator, a board or a KVM guest, and a checker that classifies every
outcome of its log against the model.  See docs/conformance.md."""

from pmupart.probe.catalogue import Params, build_catalogue, default_hpmn
from pmupart.probe.check import Report, check_on_pe, check_on_vpmu
from pmupart.probe.image import ProbeImage, build_image
from pmupart.probe.log import ProbeLog, ProbeLogError, parse_log

__all__ = [
    "Params",
    "ProbeImage",
    "ProbeLog",
    "ProbeLogError",
    "Report",
    "build_catalogue",
    "build_image",
    "check_on_pe",
    "check_on_vpmu",
    "default_hpmn",
    "parse_log",
]
