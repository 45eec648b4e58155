# Writes a C++ source defining `std::string_view <SYMBOL>()` that returns the bytes of INPUT, so a
# text asset (an HTML page) ships inside the binary. Run with cmake -P:
#   -DINPUT=page.html -DOUTPUT=page.cc -DNAMESPACE=tandem::dashboard -DSYMBOL=PageHtml
file(READ "${INPUT}" content)
string(FIND "${content}" ")TANDEM_EMBED\"" clash)
if(NOT clash EQUAL -1)
  message(FATAL_ERROR "${INPUT} contains the raw-string delimiter )TANDEM_EMBED\"")
endif()
file(WRITE "${OUTPUT}.tmp" "// Generated from ${INPUT} by cmake/EmbedText.cmake; do not edit.\n#include <string_view>\nnamespace ${NAMESPACE} {\nstd::string_view ${SYMBOL}() {\n  static constexpr std::string_view kText = R\"TANDEM_EMBED(${content})TANDEM_EMBED\";\n  return kText;\n}\n}  // namespace ${NAMESPACE}\n")
file(COPY_FILE "${OUTPUT}.tmp" "${OUTPUT}" ONLY_IF_DIFFERENT)
file(REMOVE "${OUTPUT}.tmp")
