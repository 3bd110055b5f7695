"""``pmupart probe build / check / run``: conformance probes (docs/conformance.md)."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from pmupart.probe.catalogue import MODES, Params, default_hpmn


def _hpmn(text: str | None, counters: int) -> tuple[int, ...]:
    from pmupart.cli import fail

    if text is None:
        return default_hpmn(counters)
    try:
        vals = tuple(int(x, 0) for x in text.split(",") if x.strip())
    except ValueError:
        fail(f"--hpmn takes a comma-separated list of integers, not {text!r}")
    return vals


def _params(mode: str, counters: int, hpmn: str | None) -> Params:
    from pmupart.cli import fail

    try:
        return Params(mode, counters, _hpmn(hpmn, counters) if mode == "el2" else (0,))
    except ValueError as e:
        fail(str(e))


@click.group("probe")
def probe() -> None:
    """Conformance probes: a bare-metal AArch64 image for an emulator, a board or a KVM
    guest, and a checker that classifies every outcome of its log against the model.

    \b
      pmupart probe build --mode el2 -o probe.img
      qemu-system-aarch64 -M virt,virtualization=on -cpu max -nographic -nic none \\
          -semihosting -kernel probe.img > probe.log
      pmupart probe check probe.log
    """


@probe.command("build")
@click.option("--mode", type=click.Choice(MODES), default="el2", show_default=True,
              help="el2: boots at EL2, programs MDCR_EL2 itself and probes each HPMN "
                   "(emulators, bare metal).  guest: entered at EL1 as a KVM guest.")
@click.option("-o", "--output", type=click.Path(dir_okay=False, path_type=Path),
              required=True, help="The image file (arm64 Image format).")
@click.option("--counters", type=click.IntRange(1, 31), default=6, show_default=True,
              help="PMCR_EL0.N the probes are laid out for (indices around N).")
@click.option("--hpmn", default=None,
              help="EL2 mode: the MDCR_EL2.HPMN values to probe, comma-separated "
                   "[default: 0,1,an odd middle value,N].")
@click.option("--uart", default="0x09000000", show_default=True,
              help="PL011 data register address (QEMU virt), or 'none'.")
@click.option("--gic-ispendr", default="0x08000200", show_default=True,
              help="EL2 mode: address of the 32-bit GIC register whose bit 23 is the PMU "
                   "interrupt's pending state: GICD_ISPENDR0 of QEMU virt's GICv2 (default); "
                   "for a GICv3 give the redistributor's GICR_ISPENDR0 (SGI frame + 0x200).")
@click.option("--no-semihosting", is_flag=True,
              help="Never try Arm semihosting (HLT #0xF000); by default the image uses it "
                   "when the call does not fault.")
def build(mode: str, output: Path, counters: int, hpmn: str | None, uart: str,
          gic_ispendr: str, no_semihosting: bool) -> None:
    """Write a self-contained bare-metal probe image (no cross toolchain needed)."""
    from pmupart.cli import _parse_int, fail
    from pmupart.probe.catalogue import outcomes
    from pmupart.probe.image import build_image

    p = _params(mode, counters, hpmn)
    uart_addr = None if uart.strip().lower() == "none" else _parse_int(uart, "--uart")
    img = build_image(p)
    try:
        output.write_bytes(img.with_console(uart_addr, not no_semihosting,
                                            _parse_int(gic_ispendr, "--gic-ispendr")))
    except OSError as e:
        fail(f"cannot write {output}: {e}")
    click.echo(f"{output}: {len(img.code)} bytes, {len(img.probes)} probes, "
               f"{len(outcomes(img.probes))} outcomes ({p.text()}, digest {img.digest})")


@probe.command("check")
@click.argument("log_file", metavar="LOG", type=click.Path(exists=True, dir_okay=False,
                                                           path_type=Path))
@click.option("--vpmu", type=click.Choice(["emulated", "partitioned"]), default=None,
              help="Guest image: the expectation is this vPMU of the model's KVM.")
@click.option("--core", default=None,
              help="With --vpmu: the host's catalogue core [default: the core the log's "
                   "MIDR_EL1 names].")
@click.option("--reserved", type=int, default=2, show_default=True,
              help="With --vpmu: arm_pmuv3.reserved_host_counters.")
@click.option("--revision", default=None,
              help="With --vpmu: the KVM revision to model (upstream, v8, intent, ...; "
                   "default: the model's default).")
@click.option("--json", "as_json", is_flag=True, help="Machine output, with a summary object.")
@click.option("--all", "show_all", is_flag=True, help="List agreeing outcomes too.")
def check(log_file: Path, vpmu: str | None, core: str | None, reserved: int,
          revision: str | None,
          as_json: bool, show_all: bool) -> None:
    """Classify every outcome of a probe LOG: agree, implementation deviates (rule and spec
    section), CONSTRAINED UNPREDICTABLE (which policy), model deviates (must be none).

    Exit status 0 when no outcome is classed "model deviates", 1 otherwise, 2 for bad input,
    130 when interrupted.
    """
    from pmupart.cli import fail
    from pmupart.probe.check import check_on_pe, check_on_vpmu
    from pmupart.probe.image import build_image
    from pmupart.probe.log import ProbeLogError, parse_log

    try:
        log = parse_log(log_file.read_text(errors="replace"), str(log_file))
    except ProbeLogError as e:
        fail(str(e))
    if log.errors:
        fail(f"{log_file}: the image reported: {'; '.join(log.errors)}")
    if not log.complete:
        fail(f"{log_file}: no END line: the run stopped early (timeout, crash, or a "
             "truncated capture)")
    img = build_image(log.params)
    if img.digest != log.digest:
        fail(f"{log_file}: made by an image with digest {log.digest}; this pmupart builds "
             f"{img.digest} for {log.params.text()} (rebuild the image with this version)")
    if vpmu is not None and log.params.mode != "guest":
        fail("--vpmu checks a guest image (probe build --mode guest)")
    try:
        if vpmu is not None:
            rep = check_on_vpmu(img, log, core or _core_of(log.ids), vpmu, reserved, revision)
        else:
            rep = check_on_pe(img, log)
    except (ProbeLogError, ValueError) as e:
        fail(f"{log_file}: {e}")
    except KeyboardInterrupt:
        fail("interrupted", code=130)
    if as_json:
        click.echo(rep.to_json(), nl=False)
    else:
        click.echo(rep.render(show_all), nl=False)
    sys.exit(1 if rep.summary["model"] else 0)


def _core_of(ids: dict[str, int]) -> str:
    """The catalogue core whose MIDR_EL1 implementer and part number the log shows."""
    from pmupart.arch.cores import CORES
    from pmupart.cli import fail

    midr = ids.get("MIDR_EL1", 0)
    for c in CORES.values():
        if (c.midr & 0xFF00FFF0) == (midr & 0xFF00FFF0):
            return c.name
    fail(f"MIDR_EL1 {midr:#x} names no catalogue core (pmupart cores); give --core")


@probe.command("run")
@click.option("--mode", type=click.Choice(MODES), default="el2", show_default=True)
@click.option("--counters", type=click.IntRange(1, 31), default=None,
              help="Layout of the probes [default: the core's N].")
@click.option("--hpmn", default=None, help="EL2 mode: HPMN values, comma-separated.")
@click.option("--core", default="cortex-a76", show_default=True)
@click.option("--vpmu", type=click.Choice(["emulated", "partitioned"]), default=None,
              help="Guest mode: run as the guest of this vPMU of the model's KVM.")
@click.option("--reserved", type=int, default=2, show_default=True)
@click.option("--revision", default=None, help="Guest mode: the KVM revision to model.")
@click.option("-o", "--output", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Write the log here (default: stdout).")
def run(mode: str, counters: int | None, hpmn: str | None, core: str, vpmu: str | None,
        reserved: int, revision: str | None, output: Path | None) -> None:
    """Run a probe image under the model and print its log (the model as an implementation:
    ``probe check`` of this log must find every outcome in agreement)."""
    from pmupart.arch import PE
    from pmupart.arch.cores import get_core
    from pmupart.cli import fail
    from pmupart.probe.image import build_image
    from pmupart.probe.model import (
        kvm_guest_cpu_run,
        model_log_text,
        run_image_on_cpu,
        run_image_on_pe,
    )

    try:
        c = get_core(core)
    except ValueError as e:
        fail(str(e))
    p = _params(mode, counters or c.num_counters, hpmn)
    img = build_image(p)
    try:
        if mode == "el2":
            if vpmu is not None:
                fail("--vpmu runs a guest image (--mode guest)")
            log = run_image_on_pe(img, PE.from_core(c))
            text = model_log_text(img, log, c)
        else:
            if vpmu is None:
                fail("--mode guest needs --vpmu emulated|partitioned (the model's KVM)")
            log = kvm_guest_cpu_run(core, vpmu, reserved,
                                    lambda cpu: run_image_on_cpu(img, cpu), revision)
            text = model_log_text(img, log, c)
    except ValueError as e:
        fail(str(e))
    except RuntimeError as e:
        fail(str(e), code=1)
    except KeyboardInterrupt:
        fail("interrupted", code=130)
    if output is None:
        click.echo(text, nl=False)
    else:
        output.write_text(text)
