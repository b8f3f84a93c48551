"""Import-compatible stand-ins for amazon-kclpy's pure-Python API, so an amazon-kclpy app moves
to streamworker with one changed import line (``from amazon_kclpy import kcl`` ->
``from streamworker.kclpy import kcl``). The app then runs either in-process
(``streamworker run app.py:RecordProcessor``) or as a MultiLang child (``kcl.KCLProcess``).
Where amazon_kclpy itself is installed, its CheckpointError is the one raised, so either import
catches it."""
