"""cffi bindings to the C kernels and the device runtime (kernels/).

``bindings._pqc_kernels`` is the compiled extension (built by
``pip install -e .``); ``bindings.runtime`` wraps its device runtime in
Python objects. Importing this package alone needs neither, so callers can
probe for the device path without failing.
"""
