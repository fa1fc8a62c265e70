
_clap_complete_rbox() {
    local IFS=$'\013'
    local _CLAP_COMPLETE_COMP_TYPE=${COMP_TYPE}
    if compopt +o nospace 2> /dev/null; then
        local _CLAP_COMPLETE_SPACE=false
    else
        local _CLAP_COMPLETE_SPACE=true
    fi
    # rbox: split at whitespace only, so image names keep their `:tag`.
    local line="${COMP_LINE:0:COMP_POINT}"
    local words
    IFS=$' \t\n' read -r -a words <<< "$line"
    if [[ -z "$line" || "$line" =~ [[:space:]]$ ]]; then
        words+=("")
    fi
    local _CLAP_COMPLETE_INDEX=$(( ${#words[@]} - 1 ))
    local cur="${words[_CLAP_COMPLETE_INDEX]}"
    COMPREPLY=( $( \
        _CLAP_IFS="$IFS" \
        _CLAP_COMPLETE_INDEX="$_CLAP_COMPLETE_INDEX" \
        _CLAP_COMPLETE_COMP_TYPE="$_CLAP_COMPLETE_COMP_TYPE" \
        _CLAP_COMPLETE_SPACE="$_CLAP_COMPLETE_SPACE" \
        COMPLETE="bash" \
        "rbox" -- "${words[@]}" \
    ) )
    if [[ $? != 0 ]]; then
        unset COMPREPLY
    elif [[ $_CLAP_COMPLETE_SPACE == false ]] && [[ "${COMPREPLY-}" =~ [=/:]$ ]]; then
        compopt -o nospace
    fi
    # rbox: bash replaces only its own current word ($2), which ends the whitespace word at
    # the last `:` or `=`; drop what comes before it from the answers.
    local before="${cur%"$2"}"
    if [[ -n "$before" ]]; then
        local i=${#COMPREPLY[@]}
        while [[ $((--i)) -ge 0 ]]; do
            COMPREPLY[i]="${COMPREPLY[i]#"$before"}"
        done
    fi
}
if [[ "${BASH_VERSINFO[0]}" -eq 4 && "${BASH_VERSINFO[1]}" -ge 4 || "${BASH_VERSINFO[0]}" -gt 4 ]]; then
    complete -o nospace -o bashdefault -o nosort -F _clap_complete_rbox rbox
else
    complete -o nospace -o bashdefault -F _clap_complete_rbox rbox
fi

