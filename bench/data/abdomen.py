"""One case of the built-in synthetic abdomen: its CT image, labels and affine, the same bytes every time.

It exists so that every command of the harness runs end to end on a machine without BTCV. It is not
a substitute for BTCV: numbers measured on it say that the pipeline works and that a model learns,
nothing about real anatomy. Everything derived from it is stamped ``synthetic``.

Design (approximate adult anatomy in portal-venous contrast CT, as BTCV's scans are):
- patient coordinates in millimetres, LPS (x towards the patient's left, y posterior, z superior),
  stored with an LPS-style affine so that the harness's orientation step has real work to do;
- each organ is a smooth implicit shape (deformed ellipsoid or tube) at a plausible place, size
  and HU, with per-case variation of position, size, contrast and noise drawn from a seed per case;
- the soft-tissue organs overlap in HU (liver, spleen, pancreas, stomach wall, kidney medulla), so
  a model must use shape and position, not intensity alone.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from bench.data.labels import ORGANS
from bench.data.phantom import Grid, Painter, rotation

BASE_SEED = 20240611

# Painting order: a later organ overwrites an earlier one where shapes touch, which turns contact
# regions into flattened interfaces much like organs pressing on each other.
_LABEL = {name: i + 1 for i, name in enumerate(ORGANS)}


def _case_seed(case_id: str) -> int:
    return BASE_SEED * 1000 + int(case_id)


def _body_and_grid(rng: np.random.Generator, spacing_scale: float):
    """The first draws of a case: body habitus and ellipse, voxel size, and the image matrix."""
    size = rng.uniform(0.9, 1.1)  # body habitus scales every organ's place and size
    half_width = rng.uniform(150, 172) * size  # body ellipse, x
    half_depth = rng.uniform(105, 122) * size  # body ellipse, y
    inplane = rng.uniform(0.70, 0.95) * spacing_scale
    thickness = round(rng.uniform(2.5, 5.0) * 2) / 2 * spacing_scale
    fov = 2 * half_width + 24
    n_xy = int(math.ceil(fov / inplane))
    z_lo, z_hi = -105 * size + rng.uniform(-10, 10), 110 * size + rng.uniform(-10, 10)
    n_z = int(math.ceil((z_hi - z_lo) / thickness))
    return size, half_width, half_depth, inplane, thickness, (z_lo, z_hi), n_xy, n_z


def case_grid(case_id: str, spacing_scale: float = 1.0) -> tuple[tuple[int, int, int], tuple[float, float, float]]:
    """(shape, voxel size in mm) that :func:`synthesize_case` will give the case, without painting it."""
    _, _, _, inplane, thickness, _, n_xy, n_z = _body_and_grid(np.random.default_rng(_case_seed(case_id)), spacing_scale)
    return (n_xy, n_xy, n_z), (inplane, inplane, thickness)


@dataclass
class _Case:
    """What every part of one case's painting shares: its random stream (drawn in a fixed order,
    so a case is the same bytes every time), painter, grid, habitus and extent."""

    rng: np.random.Generator
    p: Painter
    grid: Grid
    size: float
    half_width: float
    half_depth: float
    z_range: tuple[float, float]

    def jitter(self, centre, mm=7.0):
        return tuple(c * self.size + self.rng.uniform(-mm, mm) for c in centre)

    def axes(self, semi, rel=0.1):
        return tuple(s * self.size * self.rng.uniform(1 - rel, 1 + rel) for s in semi)


def _paint_body(c: _Case) -> float:
    """Air, subcutaneous fat, the abdominal wall and the bowel; returns the fat's depth (mm)."""
    rng, p, grid = c.rng, c.p, c.grid
    half_width, half_depth = c.half_width, c.half_depth
    # Body: air outside, subcutaneous fat, abdominal wall muscle, then a bowel/mesentery mixture.
    x2 = grid.x[:, None]
    y2 = grid.y[None, :]
    body_r = np.sqrt((x2 / half_width) ** 2 + (y2 / half_depth) ** 2)
    fat_depth = rng.uniform(12, 30)
    inner_r = np.sqrt((x2 / (half_width - fat_depth)) ** 2 + (y2 / (half_depth - fat_depth)) ** 2)
    wall_r = np.sqrt((x2 / (half_width - fat_depth - 9)) ** 2 + (y2 / (half_depth - fat_depth - 9)) ** 2)
    p.hu[:] = -1000
    body2d = np.where(body_r < 1, -100.0, -1000.0)
    body2d = np.where(inner_r < 1, 50.0, body2d)
    body2d = np.where(wall_r < 1, 0.0, body2d)
    p.hu[:] = body2d[:, :, None].astype(np.float32)
    # Mesenteric fat and bowel loops: a smooth random field thresholded into fat, bowel wall and gas.
    cavity = (wall_r < 1)[:, :, None]
    box = (slice(None), slice(None), slice(None))
    mix = p.wobble(*grid.coords(box), 1.0) + 0.5 * p.wobble(*grid.coords(box), 1.0)
    bowel = np.where(mix > 0.15, rng.uniform(25, 55), -95.0).astype(np.float32)
    bowel = np.where(mix > 0.62, -850.0, bowel).astype(np.float32)
    np.copyto(p.hu, bowel, where=np.broadcast_to(cavity, p.hu.shape))
    return fat_depth


def _paint_skeleton(c: _Case, fat_depth: float) -> float:
    """Spine, paraspinal and psoas muscles, lower ribs; returns the spine's y (mm)."""
    rng, p, size = c.rng, c.p, c.size
    half_width, half_depth = c.half_width, c.half_depth
    z_lo, z_hi = c.z_range
    # Spine and paraspinal muscles, posterior midline, every slice.
    spine_y = half_depth - rng.uniform(50, 58) * size
    muscle = p.tube_along_z((z_lo, z_hi), lambda z: (0 * z, 0 * z + spine_y + 12), lambda z: (0 * z + 62 * size, 0 * z + 30))
    p.paint(*muscle, None, rng.uniform(40, 60))
    for side in (-1, 1):  # psoas, growing towards the pelvis
        psoas = p.tube_along_z(
            (z_lo, 10 * size),
            lambda z, s=side: (s * 38 * size + 0 * z, 0 * z + spine_y - 5),
            lambda z: (9 + 0.12 * (10 - z).clip(0, 120), 9 + 0.1 * (10 - z).clip(0, 120)),
        )
        p.paint(*psoas, None, rng.uniform(40, 60))
    vertebra = p.tube_along_z((z_lo, z_hi), lambda z: (0 * z, 0 * z + spine_y), lambda z: (0 * z + 21, 0 * z + 18))
    p.paint(*vertebra, None, rng.uniform(550, 750))
    marrow = p.tube_along_z((z_lo, z_hi), lambda z: (0 * z, 0 * z + spine_y), lambda z: (0 * z + 17, 0 * z + 14))
    p.paint(*marrow, None, rng.uniform(180, 260))
    for side in (-1, 1):  # lower ribs in the upper slices, lateral and posterior
        for k in range(4):
            zc = (40 + 22 * k) * size + rng.uniform(-5, 5)
            rib = p.ellipsoid(
                (side * (half_width - fat_depth - 16), half_depth * 0.15, zc),
                (7, half_depth * 0.55, 6),
                rotation(rng, side * 20, 3),
                wobble=0.05,
            )
            p.paint(*rib, None, rng.uniform(400, 700))
    return spine_y


def _paint_solid_organs(c: _Case, phase: float):
    """Liver, spleen, stomach, kidneys and adrenal glands; returns the centres the later organs are placed by."""
    rng, p, size, jitter, axes = c.rng, c.p, c.size, c.jitter, c.axes
    liver_c = jitter((-58, -8, 42))
    p.paint(*p.ellipsoid(liver_c, axes((78, 68, 66)), rotation(rng, -15, 6)), _LABEL["liver"], rng.uniform(90, 120) + phase, 10)
    p.paint(
        *p.ellipsoid((liver_c[0] + 68 * size, liver_c[1] - 22 * size, liver_c[2] + 16 * size), axes((44, 30, 32)), rotation(rng, 10, 8)),
        _LABEL["liver"],
        rng.uniform(90, 120) + phase,
        10,
    )
    spleen_c = jitter((96, 42, 52))
    p.paint(*p.ellipsoid(spleen_c, axes((21, 42, 44)), rotation(rng, 35, 8)), _LABEL["spleen"], rng.uniform(100, 130) + phase, 8)

    stomach_c = jitter((52, -42, 44))
    stomach_axes = axes((40, 33, 52), 0.15)
    stomach_rot = rotation(rng, 25, 10)
    box, field = p.ellipsoid(stomach_c, stomach_axes, stomach_rot, wobble=0.1)
    p.paint(box, field, _LABEL["stomach"], rng.uniform(80, 110) + phase)
    wall = rng.uniform(0.10, 0.16)
    if box is not None:
        p.paint(box, field + wall, None, rng.uniform(5, 35))  # fluid contents
        gas = field + wall + np.float32(0.9) * np.clip((p.grid.coords(box)[1] - stomach_c[1]) / stomach_axes[1] + 0.75, 0, None)
        p.paint(box, gas, None, -950)  # gas cap in the non-dependent (anterior) part

    for organ, side, z_shift in (("right kidney", -1, -18), ("left kidney", 1, -4)):
        c = jitter((side * 72, 52, z_shift))
        semi = axes((24, 22, 52))
        rot = rotation(rng, side * -20, 8)
        box, field = p.ellipsoid(c, semi, rot, wobble=0.06)
        p.paint(box, field, _LABEL[organ], rng.uniform(150, 200) + phase, 8)
        if box is not None:
            p.paint(box, field + 0.35, None, rng.uniform(95, 130) + phase)  # medulla, overlaps liver HU
            adrenal_c = (c[0] - side * 8 * size, c[1] - 6 * size, c[2] + semi[2] + 10 * size)
            adrenal = p.ellipsoid(adrenal_c, axes((4.5, 14, 13), 0.15), rotation(rng, side * 30, 10), wobble=0.15)
            adrenal_label = _LABEL["right adrenal gland" if side < 0 else "left adrenal gland"]
            p.paint(*adrenal, adrenal_label, rng.uniform(30, 60) + phase / 2)
    return liver_c, spleen_c, stomach_c, stomach_axes


def _paint_portal_system(c: _Case, spleen_c, phase: float) -> None:
    """Pancreas, splenic vein and portal vein."""
    rng, p, size = c.rng, c.p, c.size
    # Splenic vein from the splenic hilum to the portal confluence, then the portal vein into the liver hilum.
    hilum_x, conf_x = spleen_c[0] - 22 * size, -22 * size + rng.uniform(-6, 6)
    vein_y, vein_z = 18 * size + rng.uniform(-5, 5), 24 * size + rng.uniform(-6, 6)
    vein_r = rng.uniform(5.0, 6.5)

    def splenic_vein(x):
        t = (x - conf_x) / (hilum_x - conf_x)
        return vein_y + 6 * np.sin(math.pi * t), vein_z + 10 * t

    pancreas_r0, pancreas_r1 = rng.uniform(13, 17), rng.uniform(7, 9)

    def pancreas_centre(x):
        t = np.clip((x - (conf_x - 25)) / (hilum_x - (conf_x - 25)), 0, 1)
        return vein_y - 12 - 6 * np.sin(math.pi * t), vein_z - 14 + 22 * t

    def pancreas_radius(x):
        t = np.clip((x - (conf_x - 25)) / (hilum_x - (conf_x - 25)), 0, 1)
        return pancreas_r0 + (pancreas_r1 - pancreas_r0) * t

    p.paint(*p.tube_along_x((conf_x - 30, hilum_x), pancreas_centre, pancreas_radius), _LABEL["pancreas"], rng.uniform(80, 110) + phase, 8)
    vein_hu = rng.uniform(140, 180) + phase
    p.paint(*p.tube_along_x((conf_x, hilum_x), splenic_vein, lambda x: 0 * x + vein_r), _LABEL["portal and splenic veins"], vein_hu)
    portal_top = vein_z + 38 * size
    portal = p.tube_along_z(
        (vein_z - 2, portal_top),
        lambda z: (conf_x - 0.6 * (z - vein_z), vein_y - 4 + 0 * z),
        lambda z: (0 * z + vein_r + 1, 0 * z + vein_r + 1),
    )
    p.paint(*portal, _LABEL["portal and splenic veins"], vein_hu)


def _paint_great_vessels(c: _Case, spine_y: float, phase: float) -> float:
    """Aorta and inferior vena cava; returns the aorta's y (mm)."""
    rng, p, size = c.rng, c.p, c.size
    z_lo, z_hi = c.z_range
    aorta_x, aorta_y = 14 * size + rng.uniform(-4, 4), spine_y - 30 * size
    aorta_r = rng.uniform(10, 12.5)
    aorta = p.tube_along_z(
        (z_lo, z_hi),
        lambda z: (aorta_x + 3 * np.sin(z / 60), aorta_y + 0 * z),
        lambda z: (0 * z + aorta_r, 0 * z + aorta_r),
    )
    p.paint(*aorta, _LABEL["aorta"], rng.uniform(150, 250) + phase)
    rng_ivc = (rng.uniform(10, 13), rng.uniform(7, 9))
    ivc = p.tube_along_z(
        (z_lo, z_hi),
        lambda z: (-22 * size + 4 * np.sin(z / 70), aorta_y - 4 + 0.08 * z.clip(0, None)),
        lambda z: (0 * z + rng_ivc[0], 0 * z + rng_ivc[1]),
    )
    p.paint(*ivc, _LABEL["inferior vena cava"], rng.uniform(100, 150) + phase)
    return aorta_y


def _paint_esophagus(c: _Case, stomach_c, stomach_axes, aorta_y: float) -> None:
    """The oesophagus, from the stomach up along the aorta."""
    rng, p = c.rng, c.p
    z_lo, z_hi = c.z_range
    eso_bottom = stomach_c[2] + 0.6 * stomach_axes[2]
    eso = p.tube_along_z(
        (eso_bottom - 6, z_hi),
        lambda z: (
            8 + 32 * np.clip((z_hi - z) / (z_hi - eso_bottom), 0, 1) ** 2,
            aorta_y - 18 - 10 * np.clip((z_hi - z) / (z_hi - eso_bottom), 0, 1),
        ),
        lambda z: (0 * z + 9, 0 * z + 7),
    )
    p.paint(*eso, _LABEL["esophagus"], rng.uniform(40, 70))


def _paint_gallbladder(c: _Case, liver_c) -> None:
    """The gallbladder under the liver."""
    rng, p, size, axes = c.rng, c.p, c.size, c.axes
    gall_c = (liver_c[0] + 10 * size + rng.uniform(-6, 6), liver_c[1] - 40 * size, liver_c[2] - 52 * size)
    p.paint(*p.ellipsoid(gall_c, axes((14, 13, 30), 0.2), rotation(rng, -30, 15), wobble=0.08), _LABEL["gallbladder"], rng.uniform(0, 25))


def synthesize_case(case_id: str, spacing_scale: float = 1.0, paint_more=None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Make one synthetic CT: (HU image int16, label uint8, affine 4x4), deterministic in case_id.

    ``spacing_scale`` multiplies the voxel size (and so shrinks the matrix); 1.0 gives BTCV-like
    spacing (in-plane 0.70-0.95 mm, slices 2.5-5.0 mm). Tests use larger values for tiny volumes.
    ``paint_more(case, stomach_centre)`` paints organs BTCV does not label (another dataset's), last.
    """
    rng = np.random.default_rng(_case_seed(case_id))
    size, half_width, half_depth, inplane, thickness, (z_lo, z_hi), n_xy, n_z = _body_and_grid(rng, spacing_scale)
    grid = Grid(
        x=(np.arange(n_xy) - (n_xy - 1) / 2) * inplane,
        y=(np.arange(n_xy) - (n_xy - 1) / 2) * inplane,
        z=z_lo + np.arange(n_z) * thickness,
    )
    p = Painter(grid, rng)
    c = _Case(rng, p, grid, size, half_width, half_depth, (z_lo, z_hi))
    fat_depth = _paint_body(c)
    spine_y = _paint_skeleton(c, fat_depth)
    phase = rng.uniform(-12, 12)  # the contrast phase shifts all enhancing tissue together from case to case
    liver_c, spleen_c, stomach_c, stomach_axes = _paint_solid_organs(c, phase)
    _paint_portal_system(c, spleen_c, phase)
    aorta_y = _paint_great_vessels(c, spine_y, phase)
    _paint_esophagus(c, stomach_c, stomach_axes, aorta_y)
    _paint_gallbladder(c, liver_c)
    if paint_more is not None:
        paint_more(c, stomach_c)

    # Quantum noise, stronger for thinner slices and larger patients, as on a scanner.
    sigma = rng.uniform(10, 18) * math.sqrt(3.0 / max(thickness / spacing_scale, 1.0)) * size
    image = p.hu + rng.normal(0, sigma, size=p.hu.shape).astype(np.float32)
    np.clip(image, -1024, 3071, out=image)

    affine = np.diag([-inplane, -inplane, thickness, 1.0])  # LPS storage: i -> left, j -> posterior
    affine[:3, 3] = (-grid.x[0], -grid.y[0], grid.z[0])
    return np.rint(image).astype(np.int16), p.label, affine
