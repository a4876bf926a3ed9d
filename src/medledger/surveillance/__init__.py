"""Aberration detection on weekly counts: EARS, Farrington, improved Farrington, CUSUM, MPM.

Each method is a pure function of a week series, the weeks to test and a control dataclass
named after R ``surveillance``'s control list; see docs/surveillance.md.
"""
