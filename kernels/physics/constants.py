"""Physical constants shared by the land physics, with CLM4's values (CLM4.0 ``clm_varcon`` and the
CESM shared constants ``shr_const_mod``; Oleson et al. 2010, NCAR/TN-478+STR, Table 2.6 "Physical
constants").

Plain module-level floats: numba treats them as compile-time constants. Reads and writes no state.
"""

from __future__ import annotations

#: Freezing temperature of fresh water (K), SHR_CONST_TKFRZ.
TFRZ = 273.15
#: Stefan-Boltzmann constant (W m-2 K-4), SHR_CONST_STEBOL.
SB = 5.67e-8
#: Latent heat of fusion (J/kg), SHR_CONST_LATICE.
HFUS = 3.337e5
#: Latent heat of vaporisation (J/kg), SHR_CONST_LATVAP.
HVAP = 2.501e6
#: Latent heat of sublimation (J/kg), HVAP + HFUS.
HSUB = HVAP + HFUS
#: Specific heat of dry air at constant pressure (J kg-1 K-1), SHR_CONST_CPDAIR.
CPAIR = 1.00464e3
#: Universal gas constant (J K-1 kmol-1), SHR_CONST_RGAS.
RGAS = 6.02214e26 * 1.38065e-23
#: Universal gas constant per mole (J K-1 mol-1) as CLM4.0 Stomata writes it, SHR_CONST_RGAS * 0.001.
RGAS_MOL = RGAS * 0.001
#: Gas constant of dry air (J kg-1 K-1), SHR_CONST_RDAIR = RGAS / 28.966.
RAIR = RGAS / 28.966
#: Gas constant of water vapour (J kg-1 K-1), SHR_CONST_RWV = RGAS / 18.016.
RWAT = RGAS / 18.016
#: Gravitational acceleration (m s-2), SHR_CONST_G.
GRAV = 9.80616
#: von Karman constant (1), SHR_CONST_KARMAN.
VKC = 0.4
#: Density of liquid water (kg m-3), SHR_CONST_RHOFW.
DENH2O = 1.000e3
#: Density of ice (kg m-3), SHR_CONST_RHOICE.
DENICE = 0.917e3
#: Specific heat of liquid water (J kg-1 K-1), SHR_CONST_CPFW.
CPLIQ = 4.188e3
#: Specific heat of ice (J kg-1 K-1), SHR_CONST_CPICE.
CPICE = 2.11727e3
#: Thermal conductivity of liquid water, ice and air (W m-1 K-1), clm_varcon tkwat, tkice, tkair.
TKWAT = 0.57
TKICE = 2.290
TKAIR = 0.023
#: Thermal conductivity (W m-1 K-1) and volumetric heat capacity (J m-3 K-1) of bedrock, clm_varcon
#: thk_bedrock, csol_bedrock.
TKBEDROCK = 3.0
CSOL_BEDROCK = 2.0e6
#: Lower limit of the soil matric potential (mm), CLM4.0 smpmin (SoilHydrology, CanopyFluxes).
SMPMIN = -1.0e8
#: LAI + SAI (m2/m2) below which a patch has no canopy (CLM4.0 frac_veg_nosno threshold 0.05).
VAI_MIN = 0.05
#: Seconds per day and days per year of CLM's noleap calendar.
SECSPDAY = 86400.0
DAYSPYR = 365.0
#: Atmospheric CO2 mole fraction used by default (umol/mol): Mauna Loa annual mean of 2002, the
#: study year (NOAA GML, Keeling et al.; CLM4 takes co2_ppmv from its namelist).
CO2_PPMV_2002 = 373.45
#: Height of the atmospheric forcing above the surface (m): CLM offline ``forc_hgt`` = 30 m.
FORC_HGT = 30.0

__all__ = [
    "CO2_PPMV_2002", "CPAIR", "CPICE", "CPLIQ", "CSOL_BEDROCK", "DAYSPYR", "DENH2O", "DENICE", "FORC_HGT", "GRAV",
    "HFUS", "HSUB", "HVAP", "RAIR", "RGAS", "RGAS_MOL", "RWAT", "SB", "SECSPDAY", "SMPMIN", "TFRZ", "TKAIR",
    "TKBEDROCK", "TKICE", "TKWAT", "VAI_MIN", "VKC",
]
