"""What bids-synth knows of its image kinds: the MR contrasts (BIDS suffixes) and the CT HU scale.

Plain constants, no imports: every layer (the torch-only core included) takes them from here.
"""

#: the MR contrasts (BIDS suffixes) bids-synth reads, writes or scores
MR_SUFFIXES = ("T1w", "T2w", "FLAIR", "PD", "PDw", "T2starw")
#: the MR contrasts a session is read for and the tasks process (T1w first: the reference grid);
#: PDw and T2starw only ever arrive as a translation bundle's target
SESSION_MR_SUFFIXES = MR_SUFFIXES[:4]

#: air in Hounsfield units: the lowest value a CT scanner writes
AIR_HU = -1024.0
#: the values a CT scanner stores (12 bit): synthetic CT is clipped to it, training scales by it
CT_HU_RANGE = (AIR_HU, 3071.0)
#: SynthRAD's clipping for PSNR/SSIM (data range 4024 HU) and for the QC share outside it
SCORING_HU_RANGE = (AIR_HU, 3000.0)
