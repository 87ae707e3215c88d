/*
 * error.c -- names and messages of the SHOAL_E* codes, generated from the one list in
 * shoal.h so that a code, its name and its message can never disagree.
 */
#include "shoal.h"

SHOAL_API const char *shoal_strerror(int err)
{
    switch (err) {
    case SHOAL_OK:
        return "success";
#define SHOAL_ERROR_MESSAGE(name, code, message)                                           \
    case SHOAL_##name:                                                                     \
        return message;
        SHOAL_ERRORS(SHOAL_ERROR_MESSAGE)
#undef SHOAL_ERROR_MESSAGE
    }
    return "unknown error";
}

SHOAL_API const char *shoal_error_name(int err)
{
    switch (err) {
    case SHOAL_OK:
        return "OK";
#define SHOAL_ERROR_NAME(name, code, message)                                              \
    case SHOAL_##name:                                                                     \
        return #name;
        SHOAL_ERRORS(SHOAL_ERROR_NAME)
#undef SHOAL_ERROR_NAME
    }
    return "UNKNOWN";
}
