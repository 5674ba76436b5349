"""The maths accuracy reward (``accuracy``): answer extraction, a fast path of exact and
structured comparisons (``normalize``, ``structured``) and math-verify in a worker
(``verify_backend``)."""
