//! hashwatt
