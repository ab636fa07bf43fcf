"""Developer tools around photomap: real-browser helpers, the demo's sample photos, map-quality metrics.

Tests, benchmarks, the GIF recorder and ``make demo`` use them; the ``photomap`` package never imports
them, so the stages never pull in selenium or scikit-image.
"""
