// PLACEHOLDER
extern "C" int ddx_placeholder_k_misc(void) { return 0; }
