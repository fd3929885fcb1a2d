"""Painting a phantom: a volume's voxel grid in patient millimetres, and a painter that fills
smooth implicit shapes (deformed ellipsoids, tubes) with a label and a CT intensity. The synthetic
abdomen (``bench.data.abdomen``) is drawn with it."""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Grid:
    """Voxel centres of one volume in patient LPS millimetres (axis 0 = x, 1 = y, 2 = z)."""

    x: np.ndarray
    y: np.ndarray
    z: np.ndarray

    @property
    def shape(self) -> tuple[int, int, int]:
        return (self.x.size, self.y.size, self.z.size)

    def box(self, lo: Iterable[float], hi: Iterable[float]) -> tuple[slice, slice, slice] | None:
        """Index slices of the voxels whose centres lie in [lo, hi], or None when empty."""
        out = []
        for axis, a, b in zip((self.x, self.y, self.z), lo, hi, strict=True):
            i0 = int(np.searchsorted(axis, a, side="left"))
            i1 = int(np.searchsorted(axis, b, side="right"))
            if i1 <= i0:
                return None
            out.append(slice(i0, i1))
        return tuple(out)  # type: ignore[return-value]

    def coords(self, box: tuple[slice, slice, slice]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        return (
            self.x[box[0]][:, None, None],
            self.y[box[1]][None, :, None],
            self.z[box[2]][None, None, :],
        )


def rotation(rng: np.random.Generator, yaw_deg: float, jitter_deg: float) -> np.ndarray:
    """Rotation about z by yaw (plus jitter), with a small random tilt about x and y."""
    a = math.radians(yaw_deg + rng.uniform(-jitter_deg, jitter_deg))
    b = math.radians(rng.uniform(-jitter_deg, jitter_deg))
    c = math.radians(rng.uniform(-jitter_deg, jitter_deg))
    rz = np.array([[math.cos(a), -math.sin(a), 0], [math.sin(a), math.cos(a), 0], [0, 0, 1]])
    rx = np.array([[1, 0, 0], [0, math.cos(b), -math.sin(b)], [0, math.sin(b), math.cos(b)]])
    ry = np.array([[math.cos(c), 0, math.sin(c)], [0, 1, 0], [-math.sin(c), 0, math.cos(c)]])
    return rz @ rx @ ry


class Painter:
    """Paints organs into a label volume and their HU into an image, one shape at a time."""

    def __init__(self, grid: Grid, rng: np.random.Generator):
        self.grid = grid
        self.rng = rng
        self.label = np.zeros(grid.shape, dtype=np.uint8)
        self.hu = np.empty(grid.shape, dtype=np.float32)

    def wobble(self, x, y, z, amplitude: float) -> np.ndarray:
        """Low-frequency deformation (wavelengths 45-110 mm) that makes shapes irregular but smooth.

        Each plane wave sin(k.p + phi) is the imaginary part of a product of three 1-D complex
        exponentials, which costs two complex multiplies per voxel instead of a 3-D sine.
        """
        out = np.zeros(np.broadcast_shapes(x.shape, y.shape, z.shape), dtype=np.float32)
        for _ in range(3):
            k = self.rng.normal(size=3)
            k *= 2 * math.pi / self.rng.uniform(45, 110) / np.linalg.norm(k)
            phase = self.rng.uniform(0, 2 * math.pi)
            ex = np.exp(1j * (k[0] * x + phase)).astype(np.complex64)
            ey = np.exp(1j * k[1] * y).astype(np.complex64)
            ez = np.exp(1j * k[2] * z).astype(np.complex64)
            out += (ex * ey * ez).imag
        out *= np.float32(amplitude / 3)
        return out

    def ellipsoid(self, centre, semi_axes, rotation: np.ndarray, wobble: float = 0.12):
        """Return (box, field) where field < 0 inside a deformed, rotated ellipsoid."""
        reach = max(semi_axes) * (1 + wobble) + 2
        box = self.grid.box(np.subtract(centre, reach), np.add(centre, reach))
        if box is None:
            return None, None
        x, y, z = self.grid.coords(box)
        dx, dy, dz = x - centre[0], y - centre[1], z - centre[2]
        r = rotation.T  # world -> body frame
        u = (r[0, 0] * dx + r[0, 1] * dy + r[0, 2] * dz) / semi_axes[0]
        v = (r[1, 0] * dx + r[1, 1] * dy + r[1, 2] * dz) / semi_axes[1]
        w = (r[2, 0] * dx + r[2, 1] * dy + r[2, 2] * dz) / semi_axes[2]
        field = np.sqrt(u * u + v * v + w * w) - 1 + self.wobble(x, y, z, wobble)
        return box, field.astype(np.float32)

    def tube_along_z(self, z_range, centre_fn, radii_fn):
        """Field < 0 inside a tube whose elliptical cross-section is centred at centre_fn(z)."""
        z = self.grid.z
        zs = z[(z >= z_range[0]) & (z <= z_range[1])]
        if zs.size == 0:
            return None, None
        cx, cy = centre_fn(zs)
        rx, ry = radii_fn(zs)
        reach = float(max(np.max(rx), np.max(ry))) + 2
        lo = (float(np.min(cx)) - reach, float(np.min(cy)) - reach, z_range[0])
        hi = (float(np.max(cx)) + reach, float(np.max(cy)) + reach, z_range[1])
        box = self.grid.box(lo, hi)
        if box is None:
            return None, None
        x, y, zz = self.grid.coords(box)
        cx, cy = centre_fn(zz)
        rx, ry = radii_fn(zz)
        field = np.sqrt(((x - cx) / rx) ** 2 + ((y - cy) / ry) ** 2) - 1
        return box, field.astype(np.float32)

    def tube_along_x(self, x_range, centre_fn, radius_fn):
        """Field < 0 inside a transverse tube centred at centre_fn(x) = (y, z), radius radius_fn(x)."""
        x = self.grid.x
        xs = x[(x >= x_range[0]) & (x <= x_range[1])]
        if xs.size == 0:
            return None, None
        cy, cz = centre_fn(xs)
        reach = float(np.max(radius_fn(xs))) + 2
        lo = (x_range[0], float(np.min(cy)) - reach, float(np.min(cz)) - reach)
        hi = (x_range[1], float(np.max(cy)) + reach, float(np.max(cz)) + reach)
        box = self.grid.box(lo, hi)
        if box is None:
            return None, None
        xx, y, z = self.grid.coords(box)
        cy, cz = centre_fn(xx)
        field = np.sqrt((y - cy) ** 2 + (z - cz) ** 2) / radius_fn(xx) - 1
        return box, field.astype(np.float32)

    def paint(self, box, field, label: int | None, hu: float, texture: float = 0.0) -> None:
        if box is None:
            return
        inside = field < 0
        if label is not None:
            self.label[box][inside] = label
        value = np.float32(hu)
        if texture:
            value = value + self.wobble(*self.grid.coords(box), texture).astype(np.float32)[inside]
        self.hu[box][inside] = value
