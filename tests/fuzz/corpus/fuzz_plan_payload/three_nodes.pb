
plan-120.1.0-preview.3:0.1.0-preview.2B
cp-1B
cp-2B
cp-3Jcp-2jCHANGELOG_BREAKING˜€òÑ¡­3 ¸ƒÔ¡­3ªcoordinator cp-3°¸