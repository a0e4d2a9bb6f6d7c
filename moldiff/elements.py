"""Element symbols by atomic number: the one table the featuriser needs on machines without RDKit."""
from __future__ import annotations

SYMBOLS = (
    "H He Li Be B C N O F Ne Na Mg Al Si P S Cl Ar K Ca Sc Ti V Cr Mn Fe Co Ni Cu Zn Ga Ge As Se Br Kr "
    "Rb Sr Y Zr Nb Mo Tc Ru Rh Pd Ag Cd In Sn Sb Te I Xe Cs Ba La Ce Pr Nd Pm Sm Eu Gd Tb Dy Ho Er Tm Yb "
    "Lu Hf Ta W Re Os Ir Pt Au Hg Tl Pb Bi Po At Rn Fr Ra Ac Th Pa U Np Pu Am Cm Bk Cf Es Fm Md No Lr Rf "
    "Db Sg Bh Hs Mt Ds Rg Cn Nh Fl Mc Lv Ts Og"
).split()
_Z = {s: z for z, s in enumerate(SYMBOLS, start=1)}


def atomic_number(symbol: str) -> int:
    """The atomic number of an element symbol ("C" → 6); ValueError for anything else."""
    try:
        return _Z[symbol]
    except KeyError:
        raise ValueError(f"unknown element symbol {symbol!r}") from None


def symbol(z: int) -> str:
    """The element symbol of atomic number ``z`` (6 → "C")."""
    if not 1 <= z <= len(SYMBOLS):
        raise ValueError(f"no element has atomic number {z}")
    return SYMBOLS[z - 1]
