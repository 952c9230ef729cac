"""Code generation: a Plan and its deployed integer graph -> a self-contained C project
(codegen/project.py), through Mako templates (codegen/templates/) around the kernel library."""
