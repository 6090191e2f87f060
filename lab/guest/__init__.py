"""Code that runs inside the lab VM: the project's kernel in front of a real e1000e under VFIO."""
