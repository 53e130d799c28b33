"""Sources of recordings: each turns its own data into the recording format of data.py, which reads recordings and
knows none of their sources (as nanoGPT's data/<name>/prepare.py scripts write what its train.py reads).

    python -m sources.world synth --out data/synthetic      the synthetic egocentric world (the default dataset)
    python -m sources.world show REC --out preview.png      a picture of any recording
    python -m sources.ego4d --root EGO4D_DIR --out DIR      Ego4D videos with IMU
    python -m sources.aria recording.vrs --out DIR          Project Aria VRS files (needs projectaria-tools)

Each writes through data.write_recording, which validates what it writes. Your own source does the same.
"""
