"""The one thing pyproject.toml cannot say in a stable way: the C extension.

setuptools reads everything else from pyproject.toml. The SFU's batched fan-out is
in C (src/confide/sfu/_fanout.c); it is optional: without a compiler the pure-Python
path is used (confide/sfu/fanout.py).
"""

from setuptools import Extension, setup

setup(ext_modules=[
    Extension("confide.sfu._fanout", sources=["src/confide/sfu/_fanout.c"], optional=True),
])
